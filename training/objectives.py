"""What a training step minimises, as swappable objects (the trainer knows only ``objective(model, batch)``).

- :class:`SupervisedJointLoss`  the joint model's own masked losses (both heads, ``training.loss_weights``)
- :class:`~conflict_events.training.consistency.ConsistencyLoss`  R-Drop around another joint objective
- :class:`~conflict_events.training.ensemble.DistillationLoss`  gold labels mixed with a teacher ensemble
- :class:`~conflict_events.training.pretrain.MaskedLMLoss`  masked-LM pretraining of the encoder

A joint objective also exposes :meth:`JointObjective.joint_output` (the model's output with the loss set),
so another objective can wrap it and read its logits (R-Drop needs them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from conflict_events.model import JointOutput, LossSettings

Batch = dict[str, torch.Tensor]


@dataclass
class StepLoss:
    """The loss to differentiate and its named parts (for logging; they need not add up to it)."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor]


class Objective(Protocol):
    #: The names of ``StepLoss.parts``, the same on every step.
    part_names: tuple[str, ...]

    def __call__(self, model: nn.Module, batch: Batch) -> StepLoss: ...


class JointObjective:
    """Base of the objectives over the joint model's output; subclasses define :meth:`joint_output`."""

    part_names = ("event", "role")

    def joint_output(self, model: nn.Module, batch: Batch) -> JointOutput:
        raise NotImplementedError

    def __call__(self, model: nn.Module, batch: Batch) -> StepLoss:
        output = self.joint_output(model, batch)
        assert output.loss is not None, "a joint objective must set the loss"
        zero = output.loss.new_zeros(())
        return StepLoss(
            output.loss,
            {
                "event": output.event_loss if output.event_loss is not None else zero,
                "role": output.role_loss if output.role_loss is not None else zero,
            },
        )


class SupervisedJointLoss(JointObjective):
    """The joint model's loss on the gold labels: examples without an event label (or without actor
    labels) add nothing to that head's loss."""

    def __init__(self, loss_settings: LossSettings):
        self.loss_settings = loss_settings

    def joint_output(self, model: nn.Module, batch: Batch) -> JointOutput:
        return model(**batch, loss_settings=self.loss_settings)


class MaskedLMLoss:
    """Masked-LM pretraining: the Hugging Face masked-LM model's own loss over the masked sub-words."""

    part_names: tuple[str, ...] = ()

    def __call__(self, model: nn.Module, batch: Batch) -> StepLoss:
        return StepLoss(model(**batch).loss, {})
