"""Knowledge distillation of a teacher ensemble into one student (``conflict-events distill``).

One student of the configured size (``model.encoder``, the default MiniLM) is trained by the same
:func:`~conflict_events.training.trainer.train` as any run (same trainer, checkpoints, early stopping on dev,
reports, MLflow run, registration and champion/challenger alias); only the objective differs,
:class:`DistillationLoss`:

    (1 - alpha) * gold loss  +  alpha * T^2 * KL(teacher_T || student_T)

per head (weighted by ``training.loss_weights``), where ``_T`` means probabilities at temperature
``T = distill.temperature``: the teachers' probabilities at ``T`` averaged, against the student's at ``T``
(multilabel events: binary cross-entropy against the averaged sigmoids). The soft loss covers every
training sentence, including those without an event label or without actor labels (CAMEO's class-only
sentences get role targets from the teachers, though no gold role loss). Role targets are per sub-word
over the real (non-special) tokens. Teacher outputs are computed once per distinct sequence and cached
(sentences changed by actor-swap augmentation are scored when first seen).

Unlabeled news (``distill.unlabeled``, ``training/unlabeled.py``): sentences of the named archives join the
training split with neither label, so the gold loss ignores them and only the soft targets train on them
(one teacher pass each, through the same cache). They never enter dev or test; their counts are logged as
``unlabeled.*`` params. ``distill.pseudo_label_threshold`` adds self-training: hard event labels from the
ensemble where it is confident enough.

The student alone is saved and registered: serving it costs what one model costs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer

from conflict_events import tracking
from conflict_events.config import Config
from conflict_events.errors import ConfigError, ModelError
from conflict_events.model import JointOutput, LoadedModel, LossSettings, load_joint_model, resolve_encoder
from conflict_events.training.ensemble import EnsembleModel, ensemble_of, tokenizer_mismatch
from conflict_events.training.evaluate import evaluate_loaded
from conflict_events.training.evaluation_data import warn_if_trained_on
from conflict_events.training.objectives import Batch, JointObjective
from conflict_events.training.trainer import Splits, TrainingResult, load_splits, train
from conflict_events.training.unlabeled import (
    UnlabeledStats,
    labeled_examples,
    pseudo_label,
    read_unlabeled,
    unlabeled_files,
    with_unlabeled,
)

logger = logging.getLogger(__name__)


class DistillationLoss(JointObjective):
    """The student's forward pass, with the loss mixing the gold labels and the ensemble's soft targets.
    The teachers are never trained: the trainer steps and clips only the student's parameters, and the
    targets are computed without gradients."""

    def __init__(
        self, ensemble: EnsembleModel, alpha: float, temperature: float, special_ids: Sequence[int], loss_settings: LossSettings
    ):
        self.ensemble = ensemble
        self.alpha = alpha
        self.temperature = temperature
        self.special_ids = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
        self.loss_settings = loss_settings
        self._cache: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = {}

    def soft_targets(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None, num_tags: int
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
        role_targets = torch.zeros((*input_ids.shape, num_tags), dtype=torch.float, device=input_ids.device)
        for row, key in enumerate(keys):
            cached = self._cache[key][1]
            role_targets[row, : cached.shape[0]] = cached.to(input_ids.device)
        return event_targets, role_targets

    def soft_losses(self, output: JointOutput, batch: Batch, multilabel: bool) -> tuple[torch.Tensor, torch.Tensor]:
        temperature = self.temperature
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        event_targets, role_targets = self.soft_targets(
            input_ids, attention_mask, batch.get("token_type_ids"), output.role_logits.size(-1)
        )
        student_event = output.event_logits.float() / temperature
        if multilabel:
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

    def joint_output(self, model: nn.Module, batch: Batch) -> JointOutput:
        settings = self.loss_settings
        output = model(**batch, loss_settings=settings)
        soft_event, soft_role = self.soft_losses(output, batch, self.ensemble.multilabel)
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
    training: TrainingResult
    teachers: list[str]
    ensemble_dev_metrics: dict
    # What distill.unlabeled gave (None without it).
    unlabeled: UnlabeledStats | None = None


def distill(
    config: Config,
    teachers: Sequence[str] | None = None,
    *,
    show_progress: bool = True,
    callbacks: Sequence = (),
    splits: Splits | None = None,
) -> DistillationResult:
    """Train one student on the configured corpus from the gold labels and the averaged soft targets of
    ``teachers`` (default ``distill.teachers``); logged, registered and aliased like ``train``. The
    ensemble's own dev metrics are logged in the student's run as ``ensemble_dev_*``; with
    ``distill.unlabeled``, its sentences join the training split (only) and their counts are logged as
    ``unlabeled.*`` params. ``splits``: train and score on these instead of the configured corpus (a
    cross-validation fold whose teachers trained on the same fold)."""
    uris = list(teachers) if teachers else list(config.distill.teachers)
    if not uris:
        raise ConfigError("distillation needs at least one teacher: --teacher URI (repeatable) or distill.teachers")
    unlabeled_files(config)  # a wrong path fails now, before the teachers are loaded
    if list(config.distill.teachers) != uris:
        config = config.model_copy(update={"distill": config.distill.model_copy(update={"teachers": uris})})
    teachers_loaded = [load_joint_model(uri) for uri in uris]
    ensemble_loaded = ensemble_of(teachers_loaded, uris, config.label_schema)
    ensemble = ensemble_loaded.model
    assert isinstance(ensemble, EnsembleModel)
    student_tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(config.model.encoder))
    why = tokenizer_mismatch(ensemble_loaded.tokenizer, student_tokenizer)
    if why:
        raise ModelError(
            f"the teachers' tokenizer differs from the tokenizer of model.encoder '{config.model.encoder}' ({why}); "
            "distillation matches teacher and student per sub-word, so the student needs the teachers' tokenizer"
        )

    splits = splits if splits is not None else load_splits(config)
    for uri, teacher in zip(uris, teachers_loaded):
        # A teacher that trained on the student's dev split inflates the ensemble's dev score.
        warn_if_trained_on(f"teacher {uri}", teacher.directory, splits.dev, "dev")
    settings = config.training
    unlabeled_stats = None
    if config.distill.unlabeled:
        unlabeled, unlabeled_stats = read_unlabeled(config, student_tokenizer, labeled_examples(splits))
        threshold = config.distill.pseudo_label_threshold
        if threshold is not None:
            unlabeled = pseudo_label(unlabeled, ensemble_loaded, threshold, settings.eval_batch_size, unlabeled_stats)
        logger.info("unlabeled text: %s", unlabeled_stats.summary())
        student_splits = with_unlabeled(splits, unlabeled)
    else:
        student_splits = splits
    ensemble_dev, _ = evaluate_loaded(ensemble_loaded, splits.dev, settings.eval_batch_size, settings.selection_metric)
    logger.info("teacher ensemble of %d on dev: selection score %.4f", len(uris), ensemble_dev["selection_score"])

    def distillation_loss(loss_settings: LossSettings, student: LoadedModel) -> DistillationLoss:
        return DistillationLoss(
            ensemble, config.distill.alpha, config.distill.temperature, student.tokenizer.all_special_ids, loss_settings
        )

    result = train(
        config, splits=student_splits, teacher_objective=distillation_loss, show_progress=show_progress, callbacks=callbacks
    )
    tracking.add_to_run(
        config.tracking.experiment,
        result.run_id,
        metrics=tracking.numeric_metrics(ensemble_dev, prefix="ensemble_dev_"),
        tags={"run.kind": "distill", "distill.teacher_count": str(len(uris))},
        params=unlabeled_stats.params() if unlabeled_stats is not None else None,
    )
    return DistillationResult(training=result, teachers=uris, ensemble_dev_metrics=ensemble_dev, unlabeled=unlabeled_stats)
