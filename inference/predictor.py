"""Documents in, one record per sentence out: the predictor behind the batch job, the MLflow pyfunc
(serving) and the Spark engine.

A document is split into sentences with pysbd; every sentence keeps character offsets into the
*document*, so ``document[char_start:char_end] == text`` holds for each sentence and for each actor span.
Sentences of many documents go through :func:`conflict_events.prediction.predict_texts` together (the
step evaluation uses too: length-sorted, padded per batch, under ``torch.inference_mode``). A sentence with
more sub-words than the model's ``max_length`` is cut into overlapping windows whose predictions are merged.

The records are :class:`~conflict_events.records.SentenceRecord` objects (one shape for every model,
multiclass or multilabel); each path converts them with ``to_json()`` where they leave the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from conflict_events import tracking
from conflict_events.backends import apply_backend
from conflict_events.config import InferenceConfig
from conflict_events.model import WEIGHTS_FILE, LoadedModel, load_joint_model
from conflict_events.prediction import PredictedSpan, TextPrediction, event_decisions, predict_texts
from conflict_events.records import ActorMention, SentenceRecord
from conflict_events.schema import Document
from conflict_events.sentences import SentenceSpan, SentenceSplitter
from conflict_events.sources import file_sha256

@dataclass(frozen=True)
class _Piece:
    """A text passed to the model: a whole sentence or one window of a long sentence."""

    sentence: int  # index into the flat sentence list
    char_start: int  # document offset of the piece's first character
    text: str
    # Actor spans starting inside [own_start, own_end) (document offsets) are kept from this piece.
    own_start: int
    own_end: int


def model_fingerprint(model_dir: str | Path) -> str | None:
    """``sha256:<16 hex>`` of the weights file: identifies a model that has no registry version."""
    weights = Path(model_dir) / WEIGHTS_FILE
    if not weights.is_file():
        return None
    return file_sha256(weights)[: len("sha256:") + 16]


@dataclass(frozen=True)
class ModelIdentity:
    """The model a record names (its ``model_uri`` and ``model_version`` columns)."""

    uri: str
    version: str | None = None

    @classmethod
    def of(cls, model: str | Path) -> "ModelIdentity":
        """``model`` as given, with its registry version (``models:/`` URIs) or else its weights fingerprint."""
        text = str(model)
        return cls(text, tracking.registry_version(text) or model_fingerprint(text))


def pinned_uri(model: str, version: str | None) -> str:
    """``models:/name@alias`` (or ``models:/name/latest``) as ``models:/name/<version>``; anything else as given."""
    if not (model.startswith("models:/") and version):
        return model
    reference = model[len("models:/") :].strip("/")
    name = reference.split("@", 1)[0] if "@" in reference else reference.rsplit("/", 1)[0]
    return f"models:/{name}/{version}"


@dataclass(frozen=True)
class PinnedModel:
    """A model fixed when a job starts, so that the job, resumed days later, runs the same weights.

    An alias (``models:/name@champion``) can move between a crash and ``--resume``: it is resolved once, to
    the version it names then, and the job (its records' ``model_uri``, its manifest) names that version
    (``models:/name/3``). The weights fingerprint catches what a name cannot: a model directory trained
    over in place."""

    requested: str  # --model as given
    identity: ModelIdentity  # uri: the pinned URI; version: registry version, else the weights fingerprint
    fingerprint: str | None  # sha256 prefix of the weights file (None: an injected predictor's model)
    directory: Path | None = None  # the local copy the predictor loads

    @classmethod
    def resolve(cls, model: str | Path) -> "PinnedModel":
        """Resolve an alias to its version and download a registry/run model (local directories are used in place)."""
        text = str(model)
        version = tracking.registry_version(text)
        uri = pinned_uri(text, version)
        directory = tracking.download_joint_model(uri) if uri.startswith(("models:/", "runs:/")) else Path(text)
        fingerprint = model_fingerprint(directory)
        return cls(text, ModelIdentity(uri, version or fingerprint), fingerprint, directory)

    def to_json(self) -> dict[str, str | None]:
        return {
            "requested": self.requested,
            "uri": self.identity.uri,
            "version": self.identity.version,
            "fingerprint": self.fingerprint,
        }


class Predictor:
    """Sentence-level predictions for whole documents, with document-level offsets.

    ``settings`` is the ``inference`` config section, whole: its backend is applied to ``loaded`` here,
    its batch size and window overlap are used on every call. A predictor is shared by concurrent callers
    (a served model's requests), so nothing about one call is ever stored on it: the model identity a
    request wants on its records is an argument of the predict methods.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        settings: InferenceConfig,
        identity: ModelIdentity,
        splitter: SentenceSplitter | None = None,
    ):
        self.loaded = apply_backend(loaded, settings.backend)
        self.settings = settings
        self.identity = identity
        self.splitter = splitter or SentenceSplitter()
        tokenizer = loaded.tokenizer
        special = tokenizer.num_special_tokens_to_add(pair=False)
        self.window_tokens = max(1, loaded.settings.max_length - special)
        # An overlap as large as the window would never advance; keep at least half a window of progress.
        self.window_overlap = min(settings.window_overlap, self.window_tokens // 2)
        schema = loaded.label_schema
        self._codes = {c.name: c.code for c in schema.event_classes}
        self._role_names = {r.tag: r.name for r in schema.actor_roles}

    @classmethod
    def from_uri(
        cls, model: str | Path, settings: InferenceConfig, identity: ModelIdentity | None = None
    ) -> "Predictor":
        """Load a joint model from a local directory or a ``models:/``/``runs:/`` URI; its records name
        ``identity`` (default: ``model`` as given, see :meth:`ModelIdentity.of`)."""
        return cls(load_joint_model(model), settings, identity or ModelIdentity.of(model))

    # --- public API ------------------------------------------------------------------------------
    def predict_documents(
        self, documents: Sequence[Document], identity: ModelIdentity | None = None
    ) -> list[SentenceRecord]:
        """Records for every sentence of every document, in document order then sentence order, naming
        ``identity`` (default: the predictor's own). Empty and whitespace-only documents yield no records."""
        return [record for records in self.predict_by_document(documents, identity) for record in records]

    def predict_by_document(
        self, documents: Sequence[Document], identity: ModelIdentity | None = None
    ) -> list[list[SentenceRecord]]:
        """The same records grouped per input document (one list per document, maybe empty); all
        sentences still go through the model together."""
        identity = identity or self.identity
        sentences: list[tuple[Document, int, SentenceSpan]] = []
        owners: list[int] = []
        for position, document in enumerate(documents):
            for index, span in enumerate(self.splitter.split(document.text)):
                sentences.append((document, index, span))
                owners.append(position)
        pieces = self._pieces(sentences)
        predictions = predict_texts(self.loaded, [piece.text for piece in pieces], self.settings.batch_size)
        by_sentence: list[list[tuple[_Piece, TextPrediction]]] = [[] for _ in sentences]
        for piece, prediction in zip(pieces, predictions):
            by_sentence[piece.sentence].append((piece, prediction))
        grouped: list[list[SentenceRecord]] = [[] for _ in documents]
        for position, (document, index, span) in enumerate(sentences):
            record = self._record(document, index, span, by_sentence[position], identity)
            grouped[owners[position]].append(record)
        return grouped

    # --- windows ---------------------------------------------------------------------------------
    def _pieces(self, sentences: Sequence[tuple[Document, int, SentenceSpan]]) -> list[_Piece]:
        pieces: list[_Piece] = []
        for position, (document, _, span) in enumerate(sentences):
            text = document.text[span.char_start : span.char_end]
            # A sub-word covers at least one character, so a sentence no longer than the window in
            # characters cannot need windowing; only longer ones are tokenised here.
            if len(text) <= self.window_tokens:
                pieces.append(_Piece(position, span.char_start, text, span.char_start, span.char_end))
                continue
            pieces += self._windows(position, text, span.char_start)
        return pieces

    def _windows(self, position: int, text: str, offset: int) -> list[_Piece]:
        encoding = self.loaded.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoding["offset_mapping"]
        if len(offsets) <= self.window_tokens:
            return [_Piece(position, offset, text, offset, offset + len(text))]
        # Windows start on a word (not inside one), so re-tokenising the window text gives the same sub-words.
        word_starts = [i for i in range(len(offsets)) if i == 0 or offsets[i][0] > offsets[i - 1][1]]
        starts = [0]
        while starts[-1] + self.window_tokens < len(offsets):
            target = starts[-1] + self.window_tokens - self.window_overlap
            candidates = [i for i in word_starts if starts[-1] < i <= target]
            starts.append(candidates[-1] if candidates else target)
        windows = []
        for number, first in enumerate(starts):
            last = min(first + self.window_tokens, len(offsets)) - 1
            char_start, char_end = offsets[first][0], offsets[last][1]
            # Each window owns the text from the middle of the overlap with the previous window to the
            # middle of the overlap with the next, so a span seen by two windows is kept once.
            own_start = 0 if number == 0 else (char_start + windows[-1][1]) // 2
            windows.append((char_start, char_end, own_start))
        pieces = []
        for number, (char_start, char_end, own_start) in enumerate(windows):
            own_end = len(text) if number == len(windows) - 1 else windows[number + 1][2]
            pieces.append(
                _Piece(position, offset + char_start, text[char_start:char_end], offset + own_start, offset + own_end)
            )
        return pieces

    # --- records ---------------------------------------------------------------------------------
    def _record(
        self,
        document: Document,
        index: int,
        span: SentenceSpan,
        parts: list[tuple[_Piece, TextPrediction]],
        identity: ModelIdentity,
    ) -> SentenceRecord:
        schema = self.loaded.label_schema
        if len(parts) == 1:
            scores = parts[0][1].event_scores
        elif schema.multilabel:
            # A class present in any window is present in the sentence.
            scores = np.max([prediction.event_scores for _, prediction in parts], axis=0)
        else:
            scores = np.mean([prediction.event_scores for _, prediction in parts], axis=0)
        decided = event_decisions(scores, self.loaded)
        names = schema.event_names
        decided = tuple(sorted(decided, key=lambda name: -scores[names.index(name)]))
        actors = []
        for piece, prediction in parts:
            for actor in prediction.actors:
                start = piece.char_start + actor.char_start
                if piece.own_start <= start < piece.own_end:
                    actors.append(self._actor(document.text, actor, start))
        actors.sort(key=lambda actor: (actor.char_start, actor.char_end))
        if len(parts) > 1:
            actors = _without_overlaps(actors)
        return SentenceRecord(
            doc_id=document.id,
            sentence_index=index,
            char_start=span.char_start,
            char_end=span.char_end,
            text=document.text[span.char_start : span.char_end],
            event_type=decided[0] if decided else None,
            event_code=self._codes[decided[0]] if decided else None,
            event_types=decided,
            event_scores={name: float(score) for name, score in zip(names, scores)},
            actors=tuple(actors),
            model_uri=identity.uri,
            model_version=identity.version,
        )

    def _actor(self, document: str, actor: PredictedSpan, start: int) -> ActorMention:
        end = start + (actor.char_end - actor.char_start)
        return ActorMention(
            role=self._role_names.get(actor.role, actor.role),
            text=document[start:end],
            char_start=start,
            char_end=end,
            score=float(actor.score),
        )


def _without_overlaps(actors: list[ActorMention]) -> list[ActorMention]:
    """A span kept by one window can run into the next window's region, where that window may have
    decoded a span of its own over the same words; the one that starts first wins."""
    kept: list[ActorMention] = []
    for actor in actors:
        if not kept or actor.char_start >= kept[-1].char_end:
            kept.append(actor)
    return kept
