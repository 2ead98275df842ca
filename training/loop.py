"""One training loop for every objective: :class:`Trainer`.

The trainer runs optimiser steps over the batches of a :class:`BatchSource`, asks the objective for the
loss of each batch, evaluates after every epoch and yields a :class:`StepEvent` per step and an
:class:`EpochEvent` per epoch (``training/events.py``). It knows nothing about MLflow, files, progress bars
or which techniques are on: listeners consume the events (``trainer.py``), techniques are
:class:`~conflict_events.training.plugins.TrainerPlugin` objects hooked to its events, and the objective
(supervised joint loss, R-Drop, distillation, masked LM) is an object it calls. Fine-tuning
(``trainer.py``) and masked-LM pretraining (``pretrain.py``) both run on it.

Losses stay on the device: they are summed into a tensor and read back (one host sync) only every
``sync_every`` steps and at the end of an epoch.
"""

from __future__ import annotations

import random
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
import torch
from torch import nn
from torch.profiler import record_function

from conflict_events.errors import ConfigError
from conflict_events.training.events import EpochEvent, Event, StepEvent
from conflict_events.training.objectives import Objective
from conflict_events.training.plugins import TrainerPlugin

__all__ = ["BatchSource", "EpochEvent", "Event", "LoopSettings", "LoopState", "StepEvent", "Trainer"]

# (dev metrics, selection score); the score is None when there is nothing to evaluate on.
Evaluation = Callable[[], tuple[dict, "float | None"]]


@dataclass
class LoopState:
    """Everything about progress that resume needs besides weights, optimiser, scheduler and plugins."""

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
class LoopSettings:
    epochs: int
    early_stopping_patience: int | None
    grad_clip: float | None
    sync_every: int = 20


class BatchSource(Protocol):
    """An epoch's batches: deterministic per epoch, so a resumed epoch replays the same order.

    ``batches(epoch)`` yields raw batches (what plugins' ``on_batch`` may change, e.g. a list of
    features); ``collate`` turns one into the tensors the objective gets."""

    steps_in_epoch: int

    def batches(self, epoch: int) -> Iterable[Any]: ...

    def collate(self, batch: Any) -> dict[str, torch.Tensor]: ...


# --- reproducibility -----------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    numpy_state = np.random.get_state()
    return {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
        "torch": torch.get_rng_state(),
    }


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])


def _scoped(batches: Iterable[Any], name: str) -> Iterator[Any]:
    """``batches`` with the work of producing each one under a profiler scope (``record_function``
    costs ~1 us per call when no profiler runs)."""
    iterator = iter(batches)
    while True:
        with record_function(name):
            batch = next(iterator, None)
        if batch is None:
            return
        yield batch


class Trainer:
    """Optimiser steps, evaluation and early stopping for ``model`` under ``objective``.

    ``evaluate()`` scores the model as it is (inside every plugin's ``evaluation_weights``);
    ``state_dict()`` / ``load_state_dict()`` hold everything resume needs besides the weights: optimiser,
    scheduler, loop progress, RNG states and each plugin's own state."""

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        batches: BatchSource,
        evaluate: Evaluation,
        settings: LoopSettings,
        plugins: Sequence[TrainerPlugin] = (),
    ):
        names = [plugin.name for plugin in plugins]
        if len(set(names)) != len(names):
            raise ConfigError(f"a trainer plugin may be attached once; got {names}")
        self.model = model
        self.objective = objective
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.batches = batches
        self.evaluate = evaluate
        self.settings = settings
        self.plugins = list(plugins)
        self.state = LoopState()

    # --- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loop": self.state.to_dict(),
            "rng": rng_state(),
            "plugins": {plugin.name: plugin.state_dict() for plugin in self.plugins if plugin.resumable},
        }

    def load_state_dict(self, state: dict, where: str = "the checkpoint") -> None:
        saved_plugins: dict = state.get("plugins", {})
        for plugin in self.plugins:
            if plugin.resumable and plugin.name not in saved_plugins:
                raise ConfigError(f"cannot resume from {where}: {plugin.config_key} is on now and was off in that run")
        for name in saved_plugins:
            if name not in {plugin.name for plugin in self.plugins if plugin.resumable}:
                raise ConfigError(f"cannot resume from {where}: {_config_key_of(name)} is off now and was on in that run")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.state = LoopState(**state["loop"])
        restore_rng_state(state["rng"])
        for plugin in self.plugins:
            if plugin.resumable:
                plugin.load_state_dict(saved_plugins[plugin.name])

    @contextmanager
    def evaluation_weights(self) -> Iterator[None]:
        """The weights evaluation sees (and ``best/`` saves): every plugin's, nested in plugin order."""
        with ExitStack() as stack:
            for plugin in self.plugins:
                stack.enter_context(plugin.evaluation_weights())
            yield

    # --- the loop --------------------------------------------------------------------------------
    def fit(self) -> Iterator[Event]:
        """Train from ``state.epochs_done + 1`` to ``settings.epochs``, or until early stopping."""
        for plugin in self.plugins:
            plugin.setup(self.model)
        for epoch in range(self.state.epochs_done + 1, self.settings.epochs + 1):
            if self.state.stopped_early:
                return
            yield from self._epoch(epoch)

    def _epoch(self, epoch: int) -> Iterator[Event]:
        model, settings, state = self.model, self.settings, self.state
        steps_in_epoch = self.batches.steps_in_epoch
        model.train()
        device = next(model.parameters()).device
        part_names = self.objective.part_names
        totals = torch.zeros(1 + len(part_names), device=device)  # loss, then each part (summed over steps)
        since_sync = torch.zeros((), device=device)
        steps_since_sync = 0
        step = 0
        for plugin in self.plugins:
            plugin.on_epoch_start(epoch)
        for step, raw in enumerate(_scoped(self.batches.batches(epoch), "train/batches"), start=1):
            with record_function("train/batches"):
                for plugin in self.plugins:
                    raw = plugin.on_batch(raw, epoch)
                batch = {name: tensor.to(device, non_blocking=True) for name, tensor in self.batches.collate(raw).items()}
            with record_function("train/forward"):
                loss = self.objective(model, batch)
            with record_function("train/backward"):
                self.optimizer.zero_grad(set_to_none=True)
                loss.total.backward()
            with record_function("train/optimizer"):
                if settings.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                for plugin in self.plugins:
                    plugin.after_optimizer_step()
            state.global_step += 1
            total = loss.total.detach()
            totals += torch.stack([total, *(loss.parts[name].detach() for name in part_names)])
            since_sync = since_sync + total
            steps_since_sync += 1
            synced = None
            if steps_since_sync == settings.sync_every or step == steps_in_epoch:
                synced = float(since_sync) / steps_since_sync
                since_sync = torch.zeros((), device=device)
                steps_since_sync = 0
            yield StepEvent(epoch, step, state.global_step, steps_in_epoch, synced)
        means = (totals / max(step, 1)).tolist()
        with record_function("train/evaluate"), self.evaluation_weights():
            dev_metrics, score = self.evaluate()
        event = self._close_epoch(epoch, means, dev_metrics, score)
        for plugin in self.plugins:
            plugin.on_epoch_end(event)
        yield event

    def _close_epoch(self, epoch: int, means: list[float], dev_metrics: dict, score: float | None) -> EpochEvent:
        state = self.state
        is_best = score is not None and (state.best_score is None or score > state.best_score)
        if is_best:
            state.best_score, state.best_epoch = score, epoch
            state.epochs_without_improvement = 0
        elif score is not None:
            state.epochs_without_improvement += 1
        patience = self.settings.early_stopping_patience
        should_stop = patience is not None and state.epochs_without_improvement >= patience
        state.stopped_early = should_stop and epoch < self.settings.epochs
        state.epochs_done = epoch
        state.history.append({"epoch": epoch, "train_loss": means[0], "score": score})
        return EpochEvent(
            epoch=epoch,
            global_step=state.global_step,
            train_loss=means[0],
            train_loss_parts=dict(zip(self.objective.part_names, means[1:])),
            dev_metrics=dev_metrics,
            score=score,
            is_best=is_best,
            should_stop=should_stop,
            learning_rate=float(self.scheduler.get_last_lr()[0]),
        )


def _config_key_of(plugin_name: str) -> str:
    """The config key behind a plugin named in an old checkpoint (the plugin is not attached now)."""
    for plugin_class in TrainerPlugin.__subclasses__():
        if plugin_class.name == plugin_name:
            return plugin_class.config_key
    return f"the plugin '{plugin_name}'"
