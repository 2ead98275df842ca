"""The batch job hands the C heap's free pages back to the OS after every shard, so RSS does not creep
up with the archive size."""

from __future__ import annotations

import sys

import pytest

from conflict_events.config import InferenceConfig
from conflict_events.inference import allocator
from conflict_events.inference.predictor import ModelIdentity


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_free_memory_is_released_on_linux():
    assert allocator.release_free_memory() is True


def test_other_platforms_are_left_alone(monkeypatch):
    allocator._glibc.cache_clear()
    monkeypatch.setattr(sys, "platform", "darwin")
    try:
        assert allocator.release_free_memory() is False
    finally:
        allocator._glibc.cache_clear()


def test_the_batch_job_releases_memory_after_every_shard(monkeypatch, tmp_path):
    from conflict_events.inference import batch

    calls = []
    monkeypatch.setattr(batch, "release_free_memory", lambda: calls.append(1) or True)

    class FakePredictor:
        identity = ModelIdentity("fake", "0")

        def predict_by_document(self, documents):
            return [[] for _ in documents]

    (tmp_path / "in").mkdir()
    for index in range(5):
        (tmp_path / "in" / f"{index}.txt").write_text(f"Document {index}.", encoding="utf-8")
    job = batch.PredictJob.create("fake", [str(tmp_path / "in")], InferenceConfig(shard_size=2), output_format="jsonl")
    batch.run_predict_job(job, tmp_path / "out", progress=False, predictor=FakePredictor())
    assert len(calls) == 3  # shards of 2 + 2 + 1 documents
