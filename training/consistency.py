"""R-Drop consistency regularisation (Liang et al., 2021, "R-Drop: Regularized Dropout for Neural Networks").

Each training batch runs through the model twice with independent dropout masks (as one forward pass over
the batch stacked on itself); the loss is the supervised loss of both copies plus ``weight`` times the
symmetric KL divergence between the two copies' predictions, for the event head (per sentence) and the
role head (per sub-word, padding excluded). The consistency term needs no labels, so sentences that carry only one kind
of label still regularise the other head.

Switched on by ``training.consistency_weight > 0``: :class:`ConsistencyLoss` wraps the run's joint
objective (the supervised loss, or distillation), see ``training/recipe.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from conflict_events.model import JointOutput
from conflict_events.training.objectives import Batch, JointObjective


def symmetric_kl(first_logits: torch.Tensor, second_logits: torch.Tensor) -> torch.Tensor:
    """``(KL(p||q) + KL(q||p)) / 2`` between two categorical predictions, per row (last dim = classes)."""
    first, second = F.log_softmax(first_logits, dim=-1), F.log_softmax(second_logits, dim=-1)
    return 0.5 * ((first.exp() * (first - second)).sum(-1) + (second.exp() * (second - first)).sum(-1))


def symmetric_bernoulli_kl(first_logits: torch.Tensor, second_logits: torch.Tensor) -> torch.Tensor:
    """The same for independent yes/no decisions (multilabel), averaged over the classes."""
    stacked_first = torch.stack([F.logsigmoid(first_logits), F.logsigmoid(-first_logits)], dim=-1)
    stacked_second = torch.stack([F.logsigmoid(second_logits), F.logsigmoid(-second_logits)], dim=-1)
    return symmetric_kl(stacked_first, stacked_second).mean(-1)


def consistency_loss(output: JointOutput, attention_mask: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Divergence between the two halves of ``output`` (rows ``[:n]`` and ``[n:]`` are the same examples,
    ``attention_mask`` is that of one half)."""
    event_first, event_second = output.event_logits.float().chunk(2)
    event_divergence = (symmetric_bernoulli_kl if multilabel else symmetric_kl)(event_first, event_second).mean()
    role_first, role_second = output.role_logits.float().chunk(2)
    real = attention_mask.to(role_first.dtype)
    role_divergence = (symmetric_kl(role_first, role_second) * real).sum() / real.sum().clamp(min=1.0)
    return event_divergence + role_divergence


class ConsistencyLoss(JointObjective):
    """R-Drop around ``inner``: ``inner`` on the batch stacked on itself, with the consistency term added to
    its loss. ``event_loss`` / ``role_loss`` stay the supervised losses (the mean of the two copies), so
    logged training losses keep their meaning."""

    def __init__(self, inner: JointObjective, multilabel: bool, weight: float):
        self.inner = inner
        self.multilabel = multilabel
        self.weight = weight

    def joint_output(self, model: nn.Module, batch: Batch) -> JointOutput:
        doubled = {name: torch.cat([tensor, tensor]) for name, tensor in batch.items()}
        output = self.inner.joint_output(model, doubled)
        assert output.loss is not None
        output.loss = output.loss + self.weight * consistency_loss(output, batch["attention_mask"], self.multilabel)
        return output
