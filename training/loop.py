"""The training loop as a generator of progress events.

:func:`train_while_improving` runs optimiser steps and a dev evaluation after every epoch, and yields a
:class:`StepEvent` per step and an :class:`EpochEvent` per epoch. It knows nothing about MLflow, files or
progress bars: those subscribe to the events (see ``trainer.py``), in the spirit of spaCy's
``train_while_improving``. It mutates a :class:`LoopState` that the checkpointer saves and resume restores.

Losses stay on the device: they are summed into a tensor and read back (one host sync) only every
``sync_every`` steps and at the end of an epoch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator

import torch
from torch.profiler import record_function

from conflict_events.model import JointModel, LossSettings
from conflict_events.training.averaging import WeightAverager, averaged_weights


@dataclass
class LoopState:
    """Everything about progress that resume needs besides weights, optimiser and scheduler."""

    epochs_done: int = 0
    global_step: int = 0
    best_score: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


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
    train_event_loss: float
    train_role_loss: float
    dev_metrics: dict
    score: float
    is_best: bool
    should_stop: bool
    learning_rate: float


@dataclass(frozen=True)
class LoopSettings:
    epochs: int
    steps_in_epoch: int
    early_stopping_patience: int | None
    grad_clip: float | None
    loss_settings: LossSettings
    sync_every: int = 20


def _scoped(batches: Iterable[dict[str, torch.Tensor]], name: str) -> Iterator[dict[str, torch.Tensor]]:
    """``batches`` with the work of producing each one under a profiler scope (``record_function``
    costs ~1 us per call when no profiler runs)."""
    iterator = iter(batches)
    while True:
        with record_function(name):
            batch = next(iterator, None)
        if batch is None:
            return
        yield batch


def train_while_improving(
    model: JointModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batches_for_epoch: Callable[[int], Iterable[dict[str, torch.Tensor]]],
    evaluate_dev: Callable[[], tuple[dict, float]],
    settings: LoopSettings,
    state: LoopState,
    averager: WeightAverager | None = None,
) -> Iterator[StepEvent | EpochEvent]:
    """Train from ``state.epochs_done + 1`` to ``settings.epochs``, or until early stopping.

    ``batches_for_epoch(epoch)`` returns that epoch's batches (deterministic per epoch, so resume replays
    the same order); ``evaluate_dev()`` returns ``(dev metrics, selection score)`` with the model as is,
    which is the ``averager``'s averaged weights when one is given (it is updated after every step).
    """
    for epoch in range(state.epochs_done + 1, settings.epochs + 1):
        if state.stopped_early:
            return
        model.train()
        device = next(model.parameters()).device
        totals = torch.zeros(3, device=device)  # loss, event loss, role loss (summed over steps)
        since_sync = torch.zeros((), device=device)
        steps_since_sync = 0
        step = 0
        for step, batch in enumerate(_scoped(batches_for_epoch(epoch), "train/batches"), start=1):
            batch = {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}
            with record_function("train/forward"):
                output = model(**batch, loss_settings=settings.loss_settings)
            with record_function("train/backward"):
                optimizer.zero_grad(set_to_none=True)
                output.loss.backward()
            with record_function("train/optimizer"):
                if settings.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                optimizer.step()
                scheduler.step()
                if averager is not None:
                    averager.update()
            state.global_step += 1
            loss = output.loss.detach()
            zero = loss.new_zeros(())
            totals += torch.stack(
                [
                    loss,
                    output.event_loss.detach() if output.event_loss is not None else zero,
                    output.role_loss.detach() if output.role_loss is not None else zero,
                ]
            )
            since_sync = since_sync + loss
            steps_since_sync += 1
            synced = None
            if steps_since_sync == settings.sync_every or step == settings.steps_in_epoch:
                synced = float(since_sync) / steps_since_sync
                since_sync = torch.zeros((), device=device)
                steps_since_sync = 0
            yield StepEvent(epoch, step, state.global_step, settings.steps_in_epoch, synced)
        means = (totals / max(step, 1)).tolist()
        with record_function("train/evaluate"), averaged_weights(averager):
            dev_metrics, score = evaluate_dev()
        is_best = state.best_score is None or score > state.best_score
        if is_best:
            state.best_score, state.best_epoch = score, epoch
            state.epochs_without_improvement = 0
        else:
            state.epochs_without_improvement += 1
        patience = settings.early_stopping_patience
        should_stop = patience is not None and state.epochs_without_improvement >= patience
        state.stopped_early = should_stop and epoch < settings.epochs
        state.epochs_done = epoch
        state.history.append({"epoch": epoch, "train_loss": means[0], "score": score})
        yield EpochEvent(
            epoch=epoch,
            global_step=state.global_step,
            train_loss=means[0],
            train_event_loss=means[1],
            train_role_loss=means[2],
            dev_metrics=dev_metrics,
            score=score,
            is_best=is_best,
            should_stop=should_stop,
            learning_rate=float(scheduler.get_last_lr()[0]),
        )
        if should_stop:
            return
