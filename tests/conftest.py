"""Shared fixtures. Unit tests use a tiny randomly initialised BERT (built from a config, with the real
tokenizer of the default encoder) so they run in seconds; a few integration tests use the real encoder."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from conflict_events.records import SentenceRecord
from conflict_events.schema import Document

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CONFLIBERT = SHARED_DATA / "conflibert"
SAMPLE_DATA = REPO_ROOT / "data" / "sample"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module: the benchmark scripts are files to run, not a package."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample_texts() -> list[str]:
    """The text of every example of the bundled sample corpus (data/sample/events.jsonl), in file order."""
    lines = (SAMPLE_DATA / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def requires_shared_data():
    return pytest.mark.skipif(not CONFLIBERT.is_dir(), reason=f"real corpora not found at {CONFLIBERT}")


@pytest.fixture(scope="session", autouse=True)
def feature_cache(tmp_path_factory):
    """Tokenised training features (training/data.py) are cached in the `datasets` cache: tests keep theirs in a
    folder of their own, never in the user's (a test that counts cache hits moves it again, per test)."""
    import datasets

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf-datasets-cache"))
        yield


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with random weights, saved like any HF encoder directory."""
    import torch
    from transformers import BertConfig, BertModel

    from conflict_events.model import default_encoder_path

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-encoder")
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(directory)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        source = default_encoder_path() / name
        if source.exists():
            shutil.copy(source, directory / name)
    return directory


@pytest.fixture()
def mlflow_tracking(tmp_path, monkeypatch):
    """An isolated MLflow SQLite store + artifact folder for one test.

    Besides the environment, MLflow's process-global URIs are set too: an earlier test that called
    ``mlflow.set_tracking_uri`` would otherwise keep this one writing into that test's store."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    if mlflow.active_run() is not None:
        mlflow.end_run()


def assert_offsets_hold(document: Document, records: list[SentenceRecord]) -> None:
    """Each sentence, actor span and place mention is its document's slice; sentences are stripped, disjoint,
    numbered in order and leave out nothing but whitespace; actor spans and places lie inside their sentence,
    in order."""
    covered = [False] * len(document.text)
    for record in records:
        assert document.text[record.char_start : record.char_end] == record.text
        assert record.text == record.text.strip() and record.text
        for position in range(record.char_start, record.char_end):
            assert not covered[position], "sentences overlap"
            covered[position] = True
        previous_end = record.char_start
        for actor in record.actors:
            assert document.text[actor.char_start : actor.char_end] == actor.text
            assert record.char_start <= actor.char_start < actor.char_end <= record.char_end
            assert actor.char_start >= previous_end, "actor spans overlap"
            previous_end = actor.char_end
        previous_end = record.char_start
        for place in record.locations or ():  # the same invariant for place mentions (issue 17)
            assert document.text[place.char_start : place.char_end] == place.text
            assert record.char_start <= place.char_start < place.char_end <= record.char_end
            assert place.char_start >= previous_end, "place mentions overlap"
            previous_end = place.char_end
    lost = [char for char, seen in zip(document.text, covered) if not seen and not char.isspace()]
    assert not lost, f"characters outside every sentence: {''.join(lost)[:80]!r}"
    assert [r.sentence_index for r in records] == list(range(len(records)))
