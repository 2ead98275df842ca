"""The Trainer's contract, on a model that is not the joint model: any objective, any batch source, and
techniques as plugins that own their state (training/loop.py, training/plugins.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conflict_events.errors import ConfigError
from conflict_events.training.events import EpochEvent, StepEvent
from conflict_events.training.loop import LoopSettings, Trainer
from conflict_events.training.objectives import StepLoss
from conflict_events.training.plugins import TrainerPlugin


class LineBatches:
    """y = 3x + 1 on a fixed grid, two batches an epoch; raw batches are lists of x values."""

    steps_in_epoch = 2

    def batches(self, epoch: int):
        return [[0.0, 0.5, 1.0], [1.5, 2.0, 2.5]]

    def collate(self, batch):
        x = torch.tensor(batch).unsqueeze(-1)
        return {"x": x, "y": 3 * x + 1}


class SquaredError:
    part_names = ("squared_error",)

    def __call__(self, model, batch) -> StepLoss:
        loss = ((model(batch["x"]) - batch["y"]) ** 2).mean()
        return StepLoss(loss, {"squared_error": loss})


class Recorder(TrainerPlugin):
    """Writes down every hook call; counts optimiser steps as its state."""

    name = "recorder"
    config_key = "training.recorder"
    resumable = True

    def __init__(self):
        self.calls: list[str] = []
        self.steps = 0

    def setup(self, model):
        self.calls.append("setup")

    def on_epoch_start(self, epoch):
        self.calls.append(f"epoch_start {epoch}")

    def on_batch(self, batch, epoch):
        self.calls.append("batch")
        return [x + 0.0 for x in batch]

    def after_optimizer_step(self):
        self.calls.append("step")
        self.steps += 1

    def evaluation_weights(self):
        self.calls.append("evaluate")
        return super().evaluation_weights()

    def on_epoch_end(self, event):
        self.calls.append(f"epoch_end {event.epoch}")

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def line_trainer(plugins=(), epochs=2, evaluate=None):
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    def mean_error():
        with torch.no_grad():
            x = torch.linspace(0, 2.5, 6).unsqueeze(-1)
            error = float(((model(x) - (3 * x + 1)) ** 2).mean())
        return {"error": error}, -error

    settings = LoopSettings(epochs=epochs, early_stopping_patience=None, grad_clip=None)
    return Trainer(model, SquaredError(), optimizer, scheduler, LineBatches(), evaluate or mean_error, settings, plugins)


def test_any_objective_trains_any_model_and_reports_its_named_loss_parts():
    trainer = line_trainer(epochs=30)
    events = [event for event in trainer.fit() if isinstance(event, EpochEvent)]
    assert events[-1].dev_metrics["error"] < events[0].dev_metrics["error"] / 10
    assert set(events[0].train_loss_parts) == {"squared_error"}
    assert events[0].train_loss_parts["squared_error"] == pytest.approx(events[0].train_loss)


def test_plugin_hooks_run_in_the_documented_order():
    recorder = Recorder()
    events = list(line_trainer([recorder], epochs=2).fit())
    one_epoch = ["batch", "step", "batch", "step", "evaluate"]
    assert recorder.calls == ["setup", "epoch_start 1", *one_epoch, "epoch_end 1", "epoch_start 2", *one_epoch, "epoch_end 2"]
    assert [type(event) for event in events] == [StepEvent, StepEvent, EpochEvent] * 2


def test_a_plugins_state_travels_in_the_trainers_state_and_comes_back_on_resume():
    first = Recorder()
    trainer = line_trainer([first], epochs=1)
    list(trainer.fit())
    state = trainer.state_dict()
    assert state["plugins"] == {"recorder": {"steps": 2}}

    second = Recorder()
    resumed = line_trainer([second], epochs=2)
    resumed.load_state_dict(state)
    list(resumed.fit())
    assert second.steps == 4  # two restored, two from the second epoch
    assert second.calls[1] == "epoch_start 2"  # the finished epoch is not run again


def test_switching_a_resumable_plugin_on_or_off_between_a_run_and_its_resume_is_refused():
    trainer = line_trainer([Recorder()], epochs=1)
    list(trainer.fit())
    with pytest.raises(ConfigError, match="cannot resume from last/: training.recorder is off now and was on in that run"):
        line_trainer([], epochs=2).load_state_dict(trainer.state_dict(), where="last/")
    plain = line_trainer([], epochs=1)
    list(plain.fit())
    with pytest.raises(ConfigError, match="training.recorder is on now and was off in that run"):
        line_trainer([Recorder()], epochs=2).load_state_dict(plain.state_dict(), where="last/")


def test_a_plugin_may_be_attached_once():
    with pytest.raises(ConfigError, match="a trainer plugin may be attached once"):
        line_trainer([Recorder(), Recorder()])


def test_without_a_score_no_epoch_is_best_and_patience_never_runs_out():
    trainer = line_trainer(epochs=3, evaluate=lambda: ({}, None))
    events = [event for event in trainer.fit() if isinstance(event, EpochEvent)]
    assert [event.is_best for event in events] == [False, False, False]
    assert trainer.state.best_epoch is None and trainer.state.epochs_done == 3
