"""Weight averaging (``training.weight_averaging``): an exponential moving average of the weights is what
dev evaluation sees and what ``best/`` holds, while training and ``last/`` keep the raw weights."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from conflict_events.errors import ConfigError
from conflict_events.training.averaging import WeightAverager
from conflict_events.training.loop import EpochEvent
from conflict_events.training.testing import tiny_config, write_tiny_corpus
from conflict_events.training.trainer import STATE_FILE, train


class Interrupted(Exception):
    pass


def interrupt_after_first_epoch(event):
    if isinstance(event, EpochEvent) and event.epoch == 1:
        raise Interrupted


@pytest.fixture()
def corpus_dir(tmp_path):
    write_tiny_corpus(tmp_path / "data")
    return tmp_path / "data"


def averaging_config(corpus_dir, encoder, output_dir, **training):
    return tiny_config(
        corpus_dir, encoder, output_dir,
        training={"weight_averaging": 0.9, **training}, tracking={"register_model": False},
    )


def layer_trained_away_from_its_average(decay: float, start: float, now: float):
    """A 2-weight layer whose average was taken at ``start`` and whose weights are now ``now``."""
    layer = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(start)
    averager = WeightAverager(layer, decay=decay)
    with torch.no_grad():
        layer.weight.fill_(now)
    return layer, averager


def test_the_average_moves_towards_the_weights_by_one_minus_the_ramped_decay():
    _, averager = layer_trained_away_from_its_average(decay=0.99, start=0.0, now=1.0)
    averager.update()
    # first update: decay min(0.99, 2 / 11), so the average covers 9/11 of the way to the weights
    assert averager.shadow[0].flatten().tolist() == pytest.approx([9 / 11, 9 / 11])
    for _ in range(2000):
        averager.update()
    assert averager.current_decay() == 0.99
    assert averager.shadow[0].flatten().tolist() == pytest.approx([1.0, 1.0])


def test_averaged_weights_are_swapped_in_for_the_block_and_out_again_even_on_errors():
    layer, averager = layer_trained_away_from_its_average(decay=0.5, start=0.0, now=4.0)
    with averager.averaged_weights():
        assert layer.weight.tolist() == [[0.0, 0.0]]
    assert layer.weight.tolist() == [[4.0, 4.0]]
    with pytest.raises(RuntimeError), averager.averaged_weights():
        raise RuntimeError("evaluation failed")
    assert layer.weight.tolist() == [[4.0, 4.0]]


def test_the_best_checkpoint_holds_the_averaged_weights_and_last_the_raw_ones(
    tiny_encoder_dir, corpus_dir, tmp_path, mlflow_tracking
):
    from conflict_events.model import load_joint_model

    result = train(averaging_config(corpus_dir, tiny_encoder_dir, tmp_path / "ckpt", epochs=1), show_progress=False)
    best = load_joint_model(result.best_model_dir).model
    raw = load_joint_model(tmp_path / "ckpt" / "last").model
    average = torch.load(tmp_path / "ckpt" / "last" / STATE_FILE, weights_only=True)["plugins"]["weight_averaging"]
    assert average["updates"] == 4  # one epoch: 30 training examples in batches of 8
    # one epoch, so best/ is that epoch's average: the very tensors resume keeps in training_state.pt
    for parameter, shadow in zip(best.parameters(), average["shadow"], strict=True):
        assert torch.equal(parameter, shadow)
    assert any(not torch.equal(a, b) for a, b in zip(best.parameters(), raw.parameters()))


def test_resume_continues_the_same_average(tiny_encoder_dir, corpus_dir, tmp_path, mlflow_tracking):
    straight = train(averaging_config(corpus_dir, tiny_encoder_dir, tmp_path / "straight", epochs=2), show_progress=False)
    interrupted = averaging_config(corpus_dir, tiny_encoder_dir, tmp_path / "interrupted", epochs=2)
    with pytest.raises(Interrupted):
        train(interrupted, callbacks=[interrupt_after_first_epoch], show_progress=False)
    resumed = train(interrupted, resume=True, show_progress=False)
    assert resumed.dev_metrics == straight.dev_metrics
    first = load_file(str(straight.best_model_dir / "model.safetensors"))
    second = load_file(str(resumed.best_model_dir / "model.safetensors"))
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_resuming_with_averaging_switched_on_or_off_is_refused(tiny_encoder_dir, corpus_dir, tmp_path, mlflow_tracking):
    plain = tiny_config(corpus_dir, tiny_encoder_dir, tmp_path / "ckpt", tracking={"register_model": False})
    with pytest.raises(Interrupted):
        train(plain, callbacks=[interrupt_after_first_epoch], show_progress=False)
    averaged = averaging_config(corpus_dir, tiny_encoder_dir, tmp_path / "ckpt")
    with pytest.raises(ConfigError, match="training.weight_averaging is on now and was off in that run"):
        train(averaged, resume=True, show_progress=False)
