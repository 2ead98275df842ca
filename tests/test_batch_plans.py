"""benchmarks/batch_plans.py: the calls it times for ``predict`` are the batch job's own, and a run on the
tiny model over the bundled articles prints every plan and the ratios per grouping."""

from __future__ import annotations

import sys

import pytest
from conftest import load_benchmark

from conflict_events.config import InferenceConfig
from conflict_events.inference.testing import save_random_joint_model


@pytest.fixture(scope="module")
def measurement():
    return load_benchmark("batch_plans")


def test_predicts_calls_are_batch_size_documents_within_each_shard(measurement):
    settings = InferenceConfig(shard_size=100, batch_size=64)
    assert measurement.job_calls(165, settings) == [(0, 64), (64, 100), (100, 164), (164, 165)]


def test_a_run_prints_each_plan_of_each_grouping_and_their_ratio(measurement, tiny_encoder_dir, tmp_path, monkeypatch, capsys):
    import torch

    model = save_random_joint_model(tiny_encoder_dir, tmp_path / "model", max_length=32)
    monkeypatch.setattr(sys, "argv", ["batch_plans.py", "--model", str(model), "--backend", "torch", "--rounds", "2"])
    before = torch.get_num_threads()
    try:
        measurement.main()
    finally:
        torch.set_num_threads(before)
    printed = capsys.readouterr().out.splitlines()
    for grouping in ("one call", "predict's calls"):
        for plan in ("fill", "planned"):
            assert any(line.startswith(f"{grouping}, {plan}: ") and "padded sub-words" in line for line in printed)
        (ratios,) = [line for line in printed if line.startswith(f"{grouping}: planned / fill by round ")]
        assert len(ratios.split("by round ")[1].split(";")[0].split(", ")) == 2
