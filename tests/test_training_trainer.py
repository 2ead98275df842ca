"""The trainer: batching, optimiser groups, early stopping, checkpoints and exact resume."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from conflict_events.config import config_from_mapping
from conflict_events.errors import ConfigError
from conflict_events.training.data import collate, length_grouped_batches, TrainingFeature
from conflict_events.training.loop import EpochEvent
from conflict_events.training.testing import tiny_config, write_tiny_corpus
from conflict_events.training.optimisation import OptimiserSettings, encoder_depth, parameter_groups
from conflict_events.training.trainer import train


class Interrupted(Exception):
    pass


def interrupt_after(epoch: int):
    def callback(event):
        if isinstance(event, EpochEvent) and event.epoch == epoch:
            raise Interrupted

    return callback


@pytest.fixture()
def corpus_dir(tmp_path):
    write_tiny_corpus(tmp_path / "data")
    return tmp_path / "data"


def test_length_grouped_batches_cover_every_example_once_and_replay_with_the_seed():
    lengths = [5, 50, 7, 48, 6, 49, 8, 47, 51, 46]
    batches = length_grouped_batches(lengths, batch_size=2, seed=3)
    assert sorted(i for batch in batches for i in batch) == list(range(10))
    assert batches == length_grouped_batches(lengths, batch_size=2, seed=3)
    # within the window, neighbours by length share a batch: short with short, long with long
    assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 2 for b in batches)


def test_collate_pads_to_the_longest_in_the_batch_and_ignores_padding():
    features = [TrainingFeature((101, 5, 102), (0, 0, 0), 1, (-100, 2, -100)), TrainingFeature((101, 102), (0, 0), 0, (-100, -100))]
    batch = collate(features, pad_token_id=0, multilabel=False)
    assert batch["input_ids"].tolist() == [[101, 5, 102], [101, 102, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["role_labels"][1].tolist() == [-100, -100, -100]
    assert batch["event_labels"].tolist() == [1, 0]


def test_layerwise_lr_decay_lowers_the_rate_towards_the_embeddings(tiny_encoder_dir, corpus_dir, tmp_path):
    from conflict_events.model import HeadSettings, build_joint_model

    config = tiny_config(corpus_dir, tiny_encoder_dir, tmp_path / "ckpt", training={"learning_rate": 1.0, "layerwise_lr_decay": 0.5})
    model = build_joint_model(str(tiny_encoder_dir), config.label_schema, HeadSettings()).model
    rate_of = {}
    for group in parameter_groups(model, OptimiserSettings.of_training(config.training)):
        for parameter in group["params"]:
            rate_of[id(parameter)] = group["lr"]
    named = dict(model.named_parameters())
    assert encoder_depth("encoder.encoder.layer.1.output.dense.weight", 2) == 2
    assert rate_of[id(named["event_head.weight"])] == 1.0
    assert rate_of[id(named["encoder.encoder.layer.1.output.dense.weight"])] == 1.0
    assert rate_of[id(named["encoder.encoder.layer.0.output.dense.weight"])] == 0.5
    assert rate_of[id(named["encoder.embeddings.word_embeddings.weight"])] == 0.25


def test_resume_after_an_interruption_ends_in_the_same_state_as_an_uninterrupted_run(
    tiny_encoder_dir, corpus_dir, tmp_path, mlflow_tracking
):
    sections = {"tracking": {"register_model": False}, "training": {"epochs": 3, "actor_swap_probability": 0.3}}
    straight = train(tiny_config(corpus_dir, tiny_encoder_dir, tmp_path / "straight", **sections), show_progress=False)

    interrupted = tiny_config(corpus_dir, tiny_encoder_dir, tmp_path / "interrupted", **sections)
    with pytest.raises(Interrupted):
        train(interrupted, callbacks=[interrupt_after(1)], show_progress=False)
    resumed = train(interrupted, resume=True, show_progress=False)

    assert resumed.run_id != straight.run_id
    assert resumed.epochs_done == straight.epochs_done == 3
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    first = load_file(str(tmp_path / "straight" / "last" / "model.safetensors"))
    second = load_file(str(tmp_path / "interrupted" / "last" / "model.safetensors"))
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert resumed.dev_metrics == straight.dev_metrics


def test_resume_without_a_checkpoint_says_where_it_looked(tiny_encoder_dir, corpus_dir, tmp_path, mlflow_tracking):
    config = tiny_config(corpus_dir, tiny_encoder_dir, tmp_path / "nothing-here")
    with pytest.raises(ConfigError, match="nothing to resume: no checkpoint at .*nothing-here/last/training_state.pt"):
        train(config, resume=True, show_progress=False)


def test_resuming_with_another_pooling_is_refused(tiny_encoder_dir, corpus_dir, tmp_path, mlflow_tracking):
    tracking = {"register_model": False}
    with pytest.raises(Interrupted):
        train(
            tiny_config(corpus_dir, tiny_encoder_dir, tmp_path / "ckpt", tracking=tracking),
            callbacks=[interrupt_after(1)], show_progress=False,
        )
    attention = tiny_config(corpus_dir, tiny_encoder_dir, tmp_path / "ckpt", model={"pooling": "attention"}, tracking=tracking)
    with pytest.raises(ConfigError, match="model.pooling is attention now and was mean in that run"):
        train(attention, resume=True, show_progress=False)


def test_early_stopping_stops_after_patience_epochs_without_improvement(tiny_encoder_dir, corpus_dir, tmp_path, mlflow_tracking):
    # A zero learning rate never improves on epoch 1's score.
    config = tiny_config(
        corpus_dir, tiny_encoder_dir, tmp_path / "ckpt",
        training={"epochs": 5, "learning_rate": 1e-12, "early_stopping_patience": 1, "max_steps_per_epoch": 1},
        tracking={"register_model": False},
    )
    result = train(config, show_progress=False)
    assert result.epochs_done == 2
    assert result.stopped_early
    assert result.best_epoch == 1


def test_multilabel_training_tunes_and_saves_the_threshold(tiny_encoder_dir, tmp_path, mlflow_tracking):
    import json

    from conflict_events.training.testing import tiny_examples

    data = tmp_path / "data"
    data.mkdir()
    records = []
    for record in tiny_examples(30):
        if "event" in record:
            record["event"] = [record["event"]] + (["neutral"] if record["id"].endswith("3") else [])
        records.append(json.dumps(record))
    (data / "events.jsonl").write_text("\n".join(records) + "\n")
    config = tiny_config(
        data, tiny_encoder_dir, tmp_path / "ckpt",
        labels={"task": "multilabel"}, training={"epochs": 1}, tracking={"register_model": False},
    )
    result = train(config, show_progress=False)
    saved = json.loads((result.best_model_dir / "joint_config.json").read_text())["head_settings"]
    assert saved["class_thresholds"] == list(result.dev_metrics["thresholds"].values())
    assert all(threshold >= config.training.threshold_floor for threshold in saved["class_thresholds"])


def run_status(run_id: str) -> str:
    import mlflow

    return mlflow.MlflowClient().get_run(run_id).info.status


def test_an_interrupted_training_ends_its_run_killed_and_resume_finishes_that_run(
    tiny_encoder_dir, corpus_dir, tmp_path, mlflow_tracking
):
    import mlflow

    def ctrl_c_after_first_epoch(event):
        if isinstance(event, EpochEvent):
            raise KeyboardInterrupt

    config = tiny_config(corpus_dir, tiny_encoder_dir, tmp_path / "ckpt", tracking={"register_model": False, "log_model": False})
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[ctrl_c_after_first_epoch], show_progress=False)
    (killed,) = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    assert killed.info.status == "KILLED"
    resumed = train(config, resume=True, show_progress=False)
    assert resumed.run_id == killed.info.run_id and run_status(resumed.run_id) == "FINISHED"


def test_a_training_that_fails_ends_its_run_failed(tiny_encoder_dir, corpus_dir, tmp_path, mlflow_tracking):
    import mlflow

    config = tiny_config(corpus_dir, tiny_encoder_dir, tmp_path / "ckpt", tracking={"register_model": False, "log_model": False})
    with pytest.raises(Interrupted):
        train(config, callbacks=[interrupt_after(1)], show_progress=False)
    (failed,) = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    assert failed.info.status == "FAILED"


@pytest.mark.slow
def test_sigterm_ends_the_run_killed_and_the_checkpoint_resumes(tiny_encoder_dir, corpus_dir, tmp_path, mlflow_tracking):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import mlflow
    import yaml

    from conflict_events.training.testing import tiny_config_mapping

    mapping = tiny_config_mapping(corpus_dir, tiny_encoder_dir, tmp_path / "ckpt")
    mapping["training"].update(epochs=500)  # far more than the test waits for
    mapping["tracking"].update(register_model=False, log_model=False)
    config_file = tmp_path / "long.yaml"
    config_file.write_text(yaml.safe_dump(mapping))
    state_file = tmp_path / "ckpt" / "last" / "training_state.pt"
    job = subprocess.Popen(
        [str(Path(sys.executable).with_name("conflict-events")), "train", "--config", str(config_file), "--no-progress"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not state_file.exists() and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.2)
        assert state_file.exists(), "the training never wrote its first checkpoint"
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=60) != 0
    finally:
        job.kill()
    (killed,) = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    assert killed.info.status == "KILLED"
    done = torch.load(state_file, weights_only=True)["loop"]["epochs_done"]
    mapping["training"].update(epochs=done + 1)
    resumed = train(config_from_mapping(mapping, source="<long>"), resume=True, show_progress=False)
    assert resumed.run_id == killed.info.run_id and resumed.epochs_done == done + 1
    assert run_status(resumed.run_id) == "FINISHED"
