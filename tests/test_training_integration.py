"""Slow tier: the real default encoder (all-MiniLM-L6-v2) trains a few steps on sample sentences and the
registered model evaluates through the same path as the CLI."""

from __future__ import annotations

import pytest

from conflict_events.config import load_config
from conflict_events.training.evaluate import evaluate
from conflict_events.training.trainer import train
from conftest import REPO_ROOT, SAMPLE_DATA

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not (SAMPLE_DATA / "events.jsonl").is_file(), reason="sample corpus not written yet")
def test_default_encoder_trains_registers_and_evaluates_on_sample_sentences(tmp_path, mlflow_tracking):
    config = load_config(
        REPO_ROOT / "configs" / "quickstart.yaml",
        overrides=[
            "data.max_train_examples=24",
            "training.epochs=1",
            "training.max_steps_per_epoch=3",
            "training.batch_size=8",
            f"training.output_dir={tmp_path / 'checkpoints'}",
        ],
        data_root=str(SAMPLE_DATA),
    )
    result = train(config, show_progress=False)
    assert result.alias_decision is not None and result.alias_decision.alias == "champion"
    metrics = evaluate(f"models:/{config.tracking.registered_model}@champion", config, "dev")
    assert metrics["event_macro_f1"] == result.dev_metrics["event_macro_f1"]
    assert metrics["actor_f1"] == result.dev_metrics["actor_f1"]
