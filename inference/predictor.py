"""Documents in, one record per sentence out: the predictor behind the batch job, the MLflow pyfunc
(serving) and the Spark engine.

A document is split into sentences with pysbd; every sentence keeps character offsets into the
*document*, so ``document[char_start:char_end] == text`` holds for each sentence and for each actor span.
Sentences of many documents go through :func:`conflict_events.prediction.predict_windowed` together (the
step evaluation uses too: length-sorted, padded per batch, under ``torch.inference_mode``); a sentence with
more sub-words than the model's ``max_length`` is cut into overlapping windows whose predictions are merged.

Splitting is a step of its own (:meth:`Predictor.split_documents`, pure Python, no model): the batch job
may run it ahead in a producer process (``conflict_events/inference/producer.py``) and hand the spans to
:meth:`Predictor.predict_split`; :meth:`Predictor.predict_by_document` is the two steps in a row, so the
records are the same either way.

The records are :class:`~conflict_events.records.SentenceRecord` objects (one shape for every model,
multiclass or multilabel); each path converts them with ``to_json()`` where they leave the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


from conflict_events import tracking
from conflict_events.backends import BackendChoice, apply_backend, resolve_backend
from conflict_events.config import InferenceConfig
from conflict_events.model import WEIGHTS_FILE, LoadedModel, load_joint_model
from conflict_events.prediction import PredictedSpan, TextPrediction, predict_windowed
from conflict_events.records import ActorMention, SentenceRecord
from conflict_events.resolution import ActorResolution, SentenceResolution, resolver_for
from conflict_events.schema import Document
from conflict_events.sentences import SentenceSpan, SentenceSplitter
from conflict_events.sources import file_sha256
from conflict_events.timing import StageTimes

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

    ``settings`` is the ``inference`` config section, whole: its backend is resolved for this machine and
    applied to ``loaded`` here (what runs is :attr:`backend`), its batch size and window overlap are used on
    every call. A predictor is shared by concurrent callers
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
        self.backend: BackendChoice = resolve_backend(settings.backend)
        self.loaded = apply_backend(loaded, self.backend)
        self.settings = settings
        self.identity = identity
        self.splitter = splitter or SentenceSplitter()
        schema = loaded.label_schema
        self._codes = {c.name: c.code for c in schema.event_classes}
        self._role_names = {r.tag: r.name for r in schema.actor_roles}
        # Built once per process (cached), shared read-only by concurrent callers; None when resolution is off.
        self.resolver = resolver_for(settings.resolution)

    @classmethod
    def from_uri(
        cls,
        model: str | Path,
        settings: InferenceConfig,
        identity: ModelIdentity | None = None,
        splitter: SentenceSplitter | None = None,
    ) -> "Predictor":
        """Load a joint model from a local directory or a ``models:/``/``runs:/`` URI; its records name
        ``identity`` (default: ``model`` as given, see :meth:`ModelIdentity.of`)."""
        return cls(load_joint_model(model), settings, identity or ModelIdentity.of(model), splitter)

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
        return self.predict_split(documents, self.split_documents(documents), identity)

    def split_documents(self, documents: Sequence[Document]) -> list[list[SentenceSpan]]:
        """Each document's sentences (its splitter's spans), in order: the step before the model."""
        return [self.splitter.split(document.text) for document in documents]

    def predict_split(
        self,
        documents: Sequence[Document],
        spans: Sequence[Sequence[SentenceSpan]],
        identity: ModelIdentity | None = None,
        timings: StageTimes | None = None,
    ) -> list[list[SentenceRecord]]:
        """:meth:`predict_by_document` for documents already split (``spans[i]``: the sentences of
        ``documents[i]``, as :meth:`split_documents` gives them). ``timings`` accumulates the seconds of
        ``tokenise``, ``model`` and ``decode`` (records and resolution count as decoding)."""
        if len(spans) != len(documents):
            raise ValueError(f"{len(documents)} documents but sentence spans for {len(spans)}")
        identity = identity or self.identity
        timings = timings if timings is not None else StageTimes()
        sentences: list[tuple[Document, int, SentenceSpan]] = []
        owners: list[int] = []
        for position, (document, document_spans) in enumerate(zip(documents, spans)):
            for index, span in enumerate(document_spans):
                sentences.append((document, index, span))
                owners.append(position)
        texts = [document.text[span.char_start : span.char_end] for document, _, span in sentences]
        predictions = predict_windowed(
            self.loaded, texts, self.settings.batch_size, self.settings.window_overlap, timings=timings
        )
        with timings.stage("decode"):
            per_document: list[list[tuple[int, SentenceSpan, TextPrediction]]] = [[] for _ in documents]
            for position, ((_, index, span), prediction) in enumerate(zip(sentences, predictions)):
                per_document[owners[position]].append((index, span, prediction))
            grouped: list[list[SentenceRecord]] = []
            for document, predicted in zip(documents, per_document):
                resolved = self._resolve(document, predicted)
                grouped.append(
                    [
                        self._record(document, index, span, prediction, identity, resolution)
                        for (index, span, prediction), resolution in zip(predicted, resolved)
                    ]
                )
        return grouped

    def _resolve(
        self, document: Document, predicted: list[tuple[int, SentenceSpan, TextPrediction]]
    ) -> list[SentenceResolution | None]:
        """Countries, sectors and places of one document's sentences, all of them together (the document is
        the context); ``None`` for each sentence when resolution is off."""
        if self.resolver is None or not predicted:
            return [None] * len(predicted)
        sentences = [(span.char_start, span.char_end) for _, span, _ in predicted]
        actor_spans = [
            [(span.char_start + a.char_start, span.char_start + a.char_end) for a in prediction.actors]
            for _, span, prediction in predicted
        ]
        return self.resolver.resolve_document(document.text, sentences, actor_spans)

    # --- records ---------------------------------------------------------------------------------
    def _record(
        self,
        document: Document,
        index: int,
        span: SentenceSpan,
        prediction: TextPrediction,
        identity: ModelIdentity,
        resolution: SentenceResolution | None = None,
    ) -> SentenceRecord:
        scores = prediction.event_scores
        names = self.loaded.label_schema.event_names
        decided = tuple(sorted(prediction.events, key=lambda name: -scores[names.index(name)]))
        resolved_actors = resolution.actors if resolution is not None else (None,) * len(prediction.actors)
        actors = tuple(
            self._actor(document.text, actor, span.char_start + actor.char_start, resolved)
            for actor, resolved in zip(prediction.actors, resolved_actors)
        )
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
            actors=actors,
            locations=resolution.locations if resolution is not None else None,
            event_country=resolution.event_country if resolution is not None else None,
            model_uri=identity.uri,
            model_version=identity.version,
        )

    def _actor(self, document: str, actor: PredictedSpan, start: int, resolved: ActorResolution | None) -> ActorMention:
        end = start + (actor.char_end - actor.char_start)
        return ActorMention(
            role=self._role_names.get(actor.role, actor.role),
            text=document[start:end],
            char_start=start,
            char_end=end,
            score=float(actor.score),
            country=resolved.country if resolved is not None else None,
            sector=resolved.sector if resolved is not None else None,
            org=resolved.org if resolved is not None else None,
            resolved_by=resolved.resolved_by if resolved is not None else None,
        )

