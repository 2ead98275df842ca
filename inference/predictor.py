"""Documents in, one record per sentence out: the predictor behind the batch job, the MLflow pyfunc
(serving) and the Spark engine.

A document is split into sentences with pysbd; every sentence keeps character offsets into the
*document*, so ``document[char_start:char_end] == text`` holds for each sentence and for each actor span.
Sentences of many documents go through :func:`conflict_events.prediction.predict_texts` together (the
step evaluation uses too: length-sorted, padded per batch, under ``torch.inference_mode``). A sentence with
more sub-words than the model's ``max_length`` is cut into overlapping windows whose predictions are merged.

Record format (one shape for every model, multiclass or multilabel; see docs/INFERENCE.md):

- ``doc_id``, ``sentence_index`` (0-based within the document), ``char_start``, ``char_end``, ``text``
- ``event_types``: the decided event class names (exactly one for a multiclass model, zero or more for
  a multilabel model, highest score first)
- ``event_type`` / ``event_code``: the first of ``event_types`` and its numeric code (null when a
  multilabel model decides no class)
- ``event_scores``: event class name -> probability (softmax for multiclass, sigmoid for multilabel)
- ``actors``: ``[{role, text, char_start, char_end, score}]`` with ``role`` the role *name* (``source``)
- ``model_uri``, ``model_version``
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from conflict_events.model import WEIGHTS_FILE, LoadedModel, load_joint_model
from conflict_events.prediction import PredictedSpan, TextPrediction, event_decisions, predict_texts
from conflict_events.schema import Document

RECORD_COLUMNS = (
    "doc_id",
    "sentence_index",
    "char_start",
    "char_end",
    "text",
    "event_type",
    "event_code",
    "event_types",
    "event_scores",
    "actors",
    "model_uri",
    "model_version",
)

# Blank lines separate paragraphs in news text. Splitting on them first keeps pysbd (whose regexes are
# super-linear on very long inputs) working on paragraph-sized strings and never lets a sentence run
# across a paragraph break (a headline and the first sentence of the body, say).
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
# pysbd's time grows faster than linearly with its input (200k characters of short sentences take ~3 s,
# 2M would take minutes), so a paragraph longer than this is cut into pieces first: at its last line break,
# else after its last sentence-final punctuation, else at its last whitespace in the second half of the
# piece. Only such giant paragraphs (scraped text without blank lines) see a cut pysbd did not choose.
MAX_SEGMENT_CHARS = 10_000
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*\s")


@dataclass(frozen=True)
class SentenceSpan:
    """A sentence as ``document[char_start:char_end]`` (stripped of surrounding whitespace)."""

    char_start: int
    char_end: int


class SentenceSplitter:
    """pysbd sentence boundaries, with offsets re-derived by searching the original text.

    pysbd's ``char_span`` offsets drift on runs of whitespace and some punctuation, so only the sentence
    *strings* are trusted: each one is located in the document searching forward from the end of the
    previous sentence. Whatever cannot be located (pysbd rewrote it) is folded into the next sentence,
    so no non-whitespace character of the document is ever dropped.
    """

    def __init__(self, language: str = "en"):
        import pysbd

        self._segmenter = pysbd.Segmenter(language=language, clean=False, char_span=False)

    def split(self, document: str) -> list[SentenceSpan]:
        spans: list[SentenceSpan] = []
        start = 0
        for match in _PARAGRAPH_BREAK.finditer(document):
            spans += self._split_long_paragraph(document, start, match.start())
            start = match.end()
        spans += self._split_long_paragraph(document, start, len(document))
        return spans

    def _split_long_paragraph(self, document: str, start: int, end: int) -> list[SentenceSpan]:
        spans: list[SentenceSpan] = []
        while end - start > MAX_SEGMENT_CHARS:
            cut = _cut_point(document, start + MAX_SEGMENT_CHARS // 2, start + MAX_SEGMENT_CHARS)
            spans += self._split_paragraph(document, start, cut)
            start = cut
        return spans + self._split_paragraph(document, start, end)

    def _split_paragraph(self, document: str, start: int, end: int) -> list[SentenceSpan]:
        paragraph = document[start:end]
        if not paragraph.strip():
            return []
        spans: list[SentenceSpan] = []
        cursor = 0  # in paragraph coordinates: everything before it belongs to an emitted sentence
        pending = None  # start of text pysbd returned in a form that could not be located
        for sentence in self._segmenter.segment(paragraph):
            stripped = sentence.strip()
            if not stripped:
                continue
            found = paragraph.find(stripped, cursor)
            if found < 0:
                pending = cursor if pending is None else pending
                continue
            first = pending if pending is not None else found
            spans.append(_stripped_span(paragraph, first, found + len(stripped), start))
            cursor = found + len(stripped)
            pending = None
        if paragraph[cursor:].strip():
            spans.append(_stripped_span(paragraph, cursor, len(paragraph), start))
        return [span for span in spans if span.char_end > span.char_start]


def _cut_point(document: str, low: int, high: int) -> int:
    window = document[low:high]
    newline = window.rfind("\n")
    if newline >= 0:
        return low + newline + 1
    ends = [match.end() for match in _SENTENCE_END.finditer(window)]
    if ends:
        return low + ends[-1]
    spaces = [match.end() for match in re.finditer(r"\s", window)]
    return low + spaces[-1] if spaces else high


def _stripped_span(paragraph: str, first: int, last: int, offset: int) -> SentenceSpan:
    piece = paragraph[first:last]
    lead = len(piece) - len(piece.lstrip())
    trail = len(piece) - len(piece.rstrip())
    return SentenceSpan(offset + first + lead, offset + last - trail)


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
    digest = hashlib.sha256()
    with weights.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]


class Predictor:
    """Sentence-level predictions for whole documents, with document-level offsets."""

    def __init__(
        self,
        loaded: LoadedModel,
        model_uri: str,
        model_version: str | None = None,
        batch_size: int = 64,
        window_overlap: int = 32,
        splitter: SentenceSplitter | None = None,
    ):
        self.loaded = loaded
        self.model_uri = model_uri
        self.model_version = model_version
        self.batch_size = batch_size
        self.splitter = splitter or SentenceSplitter()
        tokenizer = loaded.tokenizer
        special = tokenizer.num_special_tokens_to_add(pair=False)
        self.window_tokens = max(1, loaded.settings.max_length - special)
        # An overlap as large as the window would never advance; keep at least half a window of progress.
        self.window_overlap = min(window_overlap, self.window_tokens // 2)
        schema = loaded.label_schema
        self._codes = {c.name: c.code for c in schema.event_classes}
        self._role_names = {r.tag: r.name for r in schema.actor_roles}

    @classmethod
    def from_uri(
        cls,
        model: str | Path,
        batch_size: int = 64,
        window_overlap: int = 32,
        model_version: str | None = None,
        backend: str | None = None,
    ) -> "Predictor":
        """Load a joint model from a local directory or a ``models:/``/``runs:/`` URI and prepare it for
        the numeric ``backend`` (``inference.backend``: ``torch`` fp32, ``bf16``, ``int8`` or ``onnx``;
        default: the config's default, what ``predict`` runs)."""
        from conflict_events.config import DEFAULT_INFERENCE_BACKEND
        from conflict_events.inference.backends import apply_backend

        loaded = apply_backend(load_joint_model(model), backend or DEFAULT_INFERENCE_BACKEND)
        text = str(model)
        if model_version is None:
            model_version = registry_version(text) or model_fingerprint(text)
        return cls(loaded, text, model_version, batch_size=batch_size, window_overlap=window_overlap)

    # --- public API ------------------------------------------------------------------------------
    def predict_documents(self, documents: Sequence[Document]) -> list[dict[str, Any]]:
        """Records for every sentence of every document, in document order then sentence order.
        Empty and whitespace-only documents yield no records."""
        return [record for records in self.predict_by_document(documents) for record in records]

    def predict_by_document(self, documents: Sequence[Document]) -> list[list[dict[str, Any]]]:
        """The same records grouped per input document (one list per document, maybe empty); all
        sentences still go through the model together."""
        sentences: list[tuple[Document, int, SentenceSpan]] = []
        owners: list[int] = []
        for position, document in enumerate(documents):
            for index, span in enumerate(self.splitter.split(document.text)):
                sentences.append((document, index, span))
                owners.append(position)
        pieces = self._pieces(sentences)
        predictions = predict_texts(self.loaded, [piece.text for piece in pieces], self.batch_size)
        by_sentence: list[list[tuple[_Piece, TextPrediction]]] = [[] for _ in sentences]
        for piece, prediction in zip(pieces, predictions):
            by_sentence[piece.sentence].append((piece, prediction))
        grouped: list[list[dict[str, Any]]] = [[] for _ in documents]
        for position, (document, index, span) in enumerate(sentences):
            grouped[owners[position]].append(self._record(document, index, span, by_sentence[position]))
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
    ) -> dict[str, Any]:
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
        actors.sort(key=lambda actor: (actor["char_start"], actor["char_end"]))
        if len(parts) > 1:
            actors = _without_overlaps(actors)
        return {
            "doc_id": document.id,
            "sentence_index": index,
            "char_start": span.char_start,
            "char_end": span.char_end,
            "text": document.text[span.char_start : span.char_end],
            "event_type": decided[0] if decided else None,
            "event_code": self._codes[decided[0]] if decided else None,
            "event_types": list(decided),
            "event_scores": {name: float(score) for name, score in zip(names, scores)},
            "actors": actors,
            "model_uri": self.model_uri,
            "model_version": self.model_version,
        }

    def _actor(self, document: str, actor: PredictedSpan, start: int) -> dict[str, Any]:
        end = start + (actor.char_end - actor.char_start)
        return {
            "role": self._role_names.get(actor.role, actor.role),
            "text": document[start:end],
            "char_start": start,
            "char_end": end,
            "score": float(actor.score),
        }


def _without_overlaps(actors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A span kept by one window can run into the next window's region, where that window may have
    decoded a span of its own over the same words; the one that starts first wins."""
    kept: list[dict[str, Any]] = []
    for actor in actors:
        if not kept or actor["char_start"] >= kept[-1]["char_end"]:
            kept.append(actor)
    return kept


def registry_version(model_uri: str) -> str | None:
    """The registry version behind ``models:/name/3`` or ``models:/name@alias`` (None otherwise)."""
    if not model_uri.startswith("models:/"):
        return None
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    reference = model_uri[len("models:/") :].strip("/")
    client = MlflowClient()
    try:
        if "@" in reference:
            name, alias = reference.split("@", 1)
            return str(client.get_model_version_by_alias(name, alias).version)
        if "/" in reference:
            name, version = reference.split("/", 1)
            if version.isdigit():
                return version
            if version == "latest":
                versions = client.search_model_versions(f"name='{name}'")
                return str(max(int(v.version) for v in versions)) if versions else None
    except MlflowException:  # e.g. a logged-model id (models:/m-...), which has no registry version
        return None
    return None
