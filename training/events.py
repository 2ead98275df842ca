"""What the :class:`~conflict_events.training.loop.Trainer` yields: one event per optimiser step and one
per epoch. Progress bars, MLflow logging, checkpoints and plugins read them; none of them is called by
the step itself (spaCy's ``train_while_improving`` pattern)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepEvent:
    epoch: int  # 1-based
    step_in_epoch: int  # 1-based
    global_step: int
    steps_in_epoch: int
    # Mean training loss since the last sync; None on steps that did not sync with the host.
    loss: float | None


@dataclass(frozen=True)
class EpochEvent:
    epoch: int
    global_step: int
    train_loss: float
    # The objective's named parts (``event``, ``role`` for the joint loss), epoch means.
    train_loss_parts: dict[str, float]
    dev_metrics: dict
    # The selection score of the evaluation; None when the run has nothing to evaluate on.
    score: float | None
    is_best: bool
    should_stop: bool
    learning_rate: float


Event = StepEvent | EpochEvent
