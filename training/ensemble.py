"""Ensembles of joint models and their distillation into one student.

**Ensemble** (:class:`EnsembleModel`): the teachers read the same sub-words (they must share the tokenizer:
checked, with a clear error otherwise) and their probabilities are averaged: event class probabilities
(softmax; multilabel: sigmoid) and, per sub-word, role-tag probabilities. It returns log-probabilities as
logits, so it goes through the shared prediction step like any joint model (softmax of a log-probability
vector is the vector) and can be scored with :func:`~conflict_events.training.evaluate.evaluate_loaded`.
An ensemble of N models costs N forward passes, so it is a teacher, not what gets served.

**Distillation** (:func:`distill`): one student of the configured size (``model.encoder``, the default
MiniLM) is trained like ``train`` (same loop, checkpoints, early stopping on dev, reports, MLflow run,
registration and champion/challenger alias) with the loss

    (1 - alpha) * gold loss  +  alpha * T^2 * KL(teacher_T || student_T)

per head (weighted by ``training.loss_weights``), where ``_T`` means probabilities at temperature
``T = distill.temperature``: the teachers' probabilities at ``T`` averaged, against the student's at ``T``
(multilabel events: binary cross-entropy against the averaged sigmoids). The soft loss covers every
training sentence, including those without an event label or without actor labels. Role targets are
per sub-word over the real (non-special) tokens. Teacher outputs are computed once per distinct
sequence and cached (sentences changed by actor-swap augmentation are scored when first seen).

The student alone is saved and registered: serving it costs what one model costs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from conflict_events.config import Config
from conflict_events.errors import ConfigError, ModelError
from conflict_events.labels import LabelSchema
from conflict_events.model import HeadSettings, JointModel, JointOutput, LoadedModel, LossSettings

logger = logging.getLogger(__name__)

PROBABILITY_FLOOR = 1e-12
# A sentence tokenised by every teacher and by the student to check that they split text identically.
TOKENIZER_PROBE = "Rebels attacked the convoy near Kismayo on Monday; Erdoğan's office said 3,000 troops (UN) arrived."


# --- the ensemble --------------------------------------------------------------------------------
class EnsembleModel(nn.Module):
    """Averages the probabilities of joint models that share labels and tokenizer; see the module docstring."""

    def __init__(self, teachers: Sequence[JointModel]):
        super().__init__()
        if not teachers:
            raise ConfigError("an ensemble needs at least one model")
        self.teachers = nn.ModuleList(teachers)
        first = teachers[0]
        self.label_schema: LabelSchema = first.label_schema
        thresholds = [teacher.settings.threshold for teacher in teachers]
        self.settings = HeadSettings(
            max_length=first.settings.max_length,
            dropout=0.0,
            decoding=first.settings.decoding,
            threshold=sum(thresholds) / len(thresholds),
        )

    @property
    def multilabel(self) -> bool:
        return self.label_schema.multilabel

    def probabilities(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(event probabilities (batch, classes), role-tag probabilities (batch, seq, tags))``, averaged
        over the teachers, each at ``temperature``."""
        event_sum = role_sum = None
        for teacher in self.teachers:
            output = teacher(input_ids, attention_mask, token_type_ids)
            event_logits = output.event_logits.float() / temperature
            event = torch.sigmoid(event_logits) if self.multilabel else torch.softmax(event_logits, dim=-1)
            role = torch.softmax(output.role_logits.float() / temperature, dim=-1)
            event_sum = event if event_sum is None else event_sum + event
            role_sum = role if role_sum is None else role_sum + role
        count = len(self.teachers)
        return event_sum / count, role_sum / count

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        **_: object,
    ) -> JointOutput:
        event, role = self.probabilities(input_ids, attention_mask, token_type_ids)
        if self.multilabel:
            event = event.clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
            event_logits = torch.log(event) - torch.log1p(-event)
        else:
            event_logits = torch.log(event.clamp_min(PROBABILITY_FLOOR))
        return JointOutput(event_logits=event_logits, role_logits=torch.log(role.clamp_min(PROBABILITY_FLOOR)))


def tokenizer_mismatch(first, second) -> str | None:
    """Why two tokenizers would split text differently (None when they agree)."""
    first_vocab, second_vocab = first.get_vocab(), second.get_vocab()
    if first_vocab != second_vocab:
        return f"vocabularies differ ({len(first_vocab)} vs {len(second_vocab)} entries)"
    first_ids = first(TOKENIZER_PROBE)["input_ids"]
    second_ids = second(TOKENIZER_PROBE)["input_ids"]
    if first_ids != second_ids:
        return "same vocabulary, but a test sentence is tokenised differently (casing or normalisation differ)"
    return None


def check_compatible(teachers: Sequence[LoadedModel], names: Sequence[str], schema: LabelSchema | None = None) -> None:
    """Teachers must share the labels (``schema``, the config's, when given) and the tokenizer:
    averaging is per class and per sub-word."""
    reference_schema = schema if schema is not None else teachers[0].label_schema
    for teacher, name in zip(teachers, names):
        if teacher.label_schema.to_json() != reference_schema.to_json():
            raise ModelError(
                f"teacher '{name}' has other labels than {'the config' if schema is not None else repr(names[0])}: "
                f"event classes {list(teacher.label_schema.event_names)} vs {list(reference_schema.event_names)}, "
                f"BIO tags {list(teacher.label_schema.bio_tags)} vs {list(reference_schema.bio_tags)}"
            )
    for teacher, name in list(zip(teachers, names))[1:]:
        why = tokenizer_mismatch(teachers[0].tokenizer, teacher.tokenizer)
        if why:
            raise ModelError(
                f"teacher '{name}' uses another tokenizer than teacher '{names[0]}' ({why}); an ensemble averages "
                "per sub-word, so all teachers need the same tokenizer"
            )


def load_ensemble(uris: Sequence[str], schema: LabelSchema | None = None) -> LoadedModel:
    """The joint models at ``uris`` (``models:/...``, ``runs:/.../model`` or directories) as one ensemble."""
    from conflict_events.model import load_joint_model

    if not uris:
        raise ConfigError("an ensemble needs at least one model")
    teachers = [load_joint_model(uri) for uri in uris]
    check_compatible(teachers, list(uris), schema)
    ensemble = EnsembleModel([teacher.model for teacher in teachers])
    ensemble.eval()
    return LoadedModel(ensemble, teachers[0].tokenizer, source=" + ".join(uris))  # type: ignore[arg-type]


# --- distillation --------------------------------------------------------------------------------
class DistillationObjective(nn.Module):
    """What the training loop calls instead of the student: the student's forward pass, with the loss
    mixing the gold labels and the ensemble's soft targets. Only the student is a sub-module, so the
    loop's ``train()``, ``parameters()`` and gradient clipping never touch the teachers."""

    def __init__(self, student: JointModel, ensemble: EnsembleModel, alpha: float, temperature: float, special_ids: Sequence[int]):
        super().__init__()
        self.student = student
        object.__setattr__(self, "ensemble", ensemble)
        self.alpha = alpha
        self.temperature = temperature
        self.special_ids = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
        self._cache: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = {}

    def soft_targets(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The teachers' averaged probabilities at the temperature for this batch (cached per sequence)."""
        lengths = attention_mask.sum(dim=1).tolist()
        keys = [input_ids[row, : int(length)].cpu().numpy().tobytes() for row, length in enumerate(lengths)]
        missing: list[int] = []
        pending: set[bytes] = set()
        for row, key in enumerate(keys):
            if key not in self._cache and key not in pending:
                pending.add(key)
                missing.append(row)
        if missing:
            rows = torch.tensor(missing, dtype=torch.long)
            self.ensemble.eval()
            # no_grad, not inference_mode: the targets enter the student's loss, which autograd differentiates.
            with torch.no_grad():
                event, role = self.ensemble.probabilities(
                    input_ids[rows], attention_mask[rows], None if token_type_ids is None else token_type_ids[rows],
                    temperature=self.temperature,
                )
            for position, row in enumerate(missing):
                length = int(lengths[row])
                self._cache[keys[row]] = (event[position].detach().cpu(), role[position, :length].detach().cpu())
        event_targets = torch.stack([self._cache[key][0] for key in keys]).to(input_ids.device)
        role_targets = torch.zeros(
            (*input_ids.shape, self.student.role_head.out_features), dtype=torch.float, device=input_ids.device
        )
        for row, key in enumerate(keys):
            cached = self._cache[key][1]
            role_targets[row, : cached.shape[0]] = cached.to(input_ids.device)
        return event_targets, role_targets

    def soft_losses(self, output: JointOutput, input_ids, attention_mask, token_type_ids) -> tuple[torch.Tensor, torch.Tensor]:
        temperature = self.temperature
        event_targets, role_targets = self.soft_targets(input_ids, attention_mask, token_type_ids)
        student_event = output.event_logits.float() / temperature
        if self.student.multilabel:
            event_loss = F.binary_cross_entropy_with_logits(student_event, event_targets)
        else:
            event_loss = F.kl_div(F.log_softmax(student_event, dim=-1), event_targets, reduction="batchmean")
        real = attention_mask.bool() & ~torch.isin(input_ids, self.special_ids.to(input_ids.device))
        if real.any():
            student_roles = F.log_softmax(output.role_logits.float()[real] / temperature, dim=-1)
            role_loss = F.kl_div(student_roles, role_targets[real], reduction="batchmean")
        else:
            role_loss = output.role_logits.new_zeros(())
        # T^2 keeps the soft gradients on the scale of the hard ones (Hinton et al., 2015).
        return event_loss * temperature**2, role_loss * temperature**2

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        event_labels: torch.Tensor | None = None,
        role_labels: torch.Tensor | None = None,
        loss_settings: LossSettings | None = None,
    ) -> JointOutput:
        settings = loss_settings or LossSettings()
        output = self.student(input_ids, attention_mask, token_type_ids, event_labels, role_labels, settings)
        soft_event, soft_role = self.soft_losses(output, input_ids, attention_mask, token_type_ids)
        zero = output.event_logits.new_zeros(())
        hard_event = output.event_loss if output.event_loss is not None else zero
        hard_role = output.role_loss if output.role_loss is not None else zero
        event_loss = (1 - self.alpha) * hard_event + self.alpha * soft_event
        role_loss = (1 - self.alpha) * hard_role + self.alpha * soft_role
        output.event_loss, output.role_loss = event_loss, role_loss
        output.loss = settings.event_weight * event_loss + settings.role_weight * role_loss
        return output


@dataclass
class DistillationResult:
    training: "TrainingResult"  # noqa: F821 - conflict_events.training.trainer.TrainingResult
    teachers: list[str]
    ensemble_dev_metrics: dict


def distill(
    config: Config,
    teachers: Sequence[str] | None = None,
    *,
    show_progress: bool = True,
    callbacks: Sequence = (),
) -> DistillationResult:
    """Train one student on the configured corpus from the gold labels and the averaged soft targets of
    ``teachers`` (default ``distill.teachers``); logged, registered and aliased like ``train``. The
    ensemble's own dev metrics are logged in the student's run as ``ensemble_dev_*``."""
    import mlflow
    from transformers import AutoTokenizer

    from conflict_events import tracking
    from conflict_events.model import resolve_encoder
    from conflict_events.training.evaluate import evaluate_loaded
    from conflict_events.training.trainer import load_splits, train

    uris = list(teachers) if teachers else list(config.distill.teachers)
    if not uris:
        raise ConfigError("distillation needs at least one teacher: --teacher URI (repeatable) or distill.teachers")
    if list(config.distill.teachers) != uris:
        config = config.model_copy(update={"distill": config.distill.model_copy(update={"teachers": uris})})
    ensemble_loaded = load_ensemble(uris, config.label_schema)
    ensemble: EnsembleModel = ensemble_loaded.model  # type: ignore[assignment]
    student_tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(config.model.encoder))
    why = tokenizer_mismatch(ensemble_loaded.tokenizer, student_tokenizer)
    if why:
        raise ModelError(
            f"the teachers' tokenizer differs from the tokenizer of model.encoder '{config.model.encoder}' ({why}); "
            "distillation matches teacher and student per sub-word, so the student needs the teachers' tokenizer"
        )

    splits = load_splits(config)
    settings = config.training
    ensemble_dev, _ = evaluate_loaded(ensemble_loaded, splits.dev, settings.eval_batch_size, settings.selection_metric)
    logger.info("teacher ensemble of %d on dev: selection score %.4f", len(uris), ensemble_dev["selection_score"])

    def wrap(loaded: LoadedModel) -> nn.Module:
        return DistillationObjective(
            loaded.model, ensemble, config.distill.alpha, config.distill.temperature, loaded.tokenizer.all_special_ids
        )

    result = train(config, splits=splits, wrap_model=wrap, show_progress=show_progress, callbacks=callbacks)
    # Added to the student's finished run, next to its own dev metrics.
    with tracking.start_training_run(config.tracking.experiment, run_id=result.run_id):
        tracking.log_metrics(ensemble_dev, prefix="ensemble_dev_")
        mlflow.set_tags({"run.kind": "distill", "distill.teacher_count": str(len(uris))})
    return DistillationResult(training=result, teachers=uris, ensemble_dev_metrics=ensemble_dev)
