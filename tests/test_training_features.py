"""Training features through `Dataset.map`: the same features as before, a cache that a second run on the
same examples, tokenizer and lengths reads back, a sweep over folds that tokenises its corpus once, and a
`datasets.Dataset` saved to disk training end to end through a config."""

from __future__ import annotations

import json
import logging

import datasets
import mlflow
import pytest
from transformers import AutoTokenizer

from conflict_events.corpora.hf import to_dataset
from conflict_events.corpora.jsonl import example_from_record
from conflict_events.schema import ActorSpan, EventExample, SourceRef
from conflict_events.training.data import encode_examples, feature_cache_dir, features_fingerprint
from conflict_events.training.sweep import run_sweep
from conflict_events.training.testing import tiny_config, tiny_examples, write_tiny_corpus
from conflict_events.training.trainer import train

DATA_LOG = "conflict_events.training.data"


@pytest.fixture()
def own_cache(tmp_path, monkeypatch):
    """A feature cache for this test alone, so its first tokenisation is a miss."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    return tmp_path / "hf-cache"


def tokenisations(caplog) -> list[str]:
    return [
        "tokenised" if record.getMessage().startswith("tokenised") else "cache"
        for record in caplog.records
        if record.name == DATA_LOG and record.levelno == logging.INFO
    ]


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder_dir):
    return AutoTokenizer.from_pretrained(tiny_encoder_dir)


@pytest.fixture(scope="module")
def schema(tmp_path_factory, tiny_encoder_dir):
    return tiny_config(tmp_path_factory.mktemp("unused"), tiny_encoder_dir, tmp_path_factory.mktemp("ckpt")).label_schema


def corpus(schema, count: int = 20) -> list[EventExample]:
    return [example_from_record(record, schema, SourceRef("events.jsonl", line)) for line, record in enumerate(tiny_examples(count), 1)]


def test_a_second_encoding_reads_the_cache_and_gives_the_same_features(tokenizer, schema, own_cache, caplog):
    examples = corpus(schema) + [
        EventExample("long", " ".join(["Rebel fighters attacked the army near the border."] * 6), event="material_conflict",
                     actors=[ActorSpan("S", 0, 14)]),
    ]
    caplog.set_level(logging.INFO, logger=DATA_LOG)
    first = encode_examples(examples, tokenizer, schema, max_length=16, window_overlap=4)
    again = encode_examples(examples, tokenizer, schema, max_length=16, window_overlap=4)
    assert tokenisations(caplog) == ["tokenised", "cache"]
    assert again == first and len(first) > len(examples)  # the long example is in windows
    assert list(feature_cache_dir().glob("features-*.arrow")) and feature_cache_dir().parent == own_cache
    # Other lengths or another label layer are other features.
    encode_examples(examples, tokenizer, schema, max_length=20, window_overlap=4)
    relabeled = [EventExample(e.id, e.text, e.tokens, e.event, None, e.source) for e in examples]
    encode_examples(relabeled, tokenizer, schema, max_length=16, window_overlap=4)
    assert tokenisations(caplog) == ["tokenised", "cache", "tokenised", "tokenised"]


def test_rows_select_the_features_of_a_subset_from_the_whole_tokenisation(tokenizer, schema, own_cache):
    examples = corpus(schema)
    rows = [3, 0, 7, 19]
    assert encode_examples(examples, tokenizer, schema, 32, rows=rows) == encode_examples(
        [examples[row] for row in rows], tokenizer, schema, 32
    )
    assert encode_examples(examples, tokenizer, schema, 32, task=2)[0].task == 2


def test_the_fingerprint_ignores_what_a_tokenizer_call_leaves_behind(tokenizer, schema, tiny_encoder_dir):
    examples = corpus(schema, 5)
    before = features_fingerprint(examples, tokenizer, schema, 32, 8)
    tokenizer(["some text"], truncation=True, max_length=9, stride=3, return_overflowing_tokens=True)
    assert features_fingerprint(examples, tokenizer, schema, 32, 8) == before
    assert features_fingerprint(examples, AutoTokenizer.from_pretrained(tiny_encoder_dir), schema, 32, 8) == before
    assert features_fingerprint(examples[:4], tokenizer, schema, 32, 8) != before
    assert features_fingerprint(examples, tokenizer, schema, 32, 4) != before


def test_a_sweep_over_folds_tokenises_its_corpus_once(tiny_encoder_dir, tmp_path, own_cache, mlflow_tracking, caplog):
    write_tiny_corpus(tmp_path / "data")
    config = tiny_config(
        tmp_path / "data", tiny_encoder_dir, tmp_path / "ckpt",
        training={"epochs": 1, "max_steps_per_epoch": 1}, tracking={"register_model": False},
    )
    caplog.set_level(logging.INFO, logger=DATA_LOG)
    result = run_sweep(config, [], folds=2)
    assert len(result.children) == 2
    assert tokenisations(caplog) == ["tokenised", "cache"]  # the pool of 40, once; the second fold reads it back
    assert "tokenised 40 examples" in caplog.text and "features of 40 examples from cache" in caplog.text


def test_a_dataset_saved_to_disk_trains_end_to_end_through_a_config(tiny_encoder_dir, tmp_path, mlflow_tracking):
    schema = tiny_config(tmp_path, tiny_encoder_dir, tmp_path / "ckpt").label_schema
    to_dataset(corpus(schema, 40), schema).save_to_disk(tmp_path / "data" / "tiny_ds")
    config = tiny_config(
        tmp_path / "data", tiny_encoder_dir, tmp_path / "ckpt",
        data={"train": {"dataset": "tiny_ds"}}, training={"epochs": 1}, tracking={"register_model": False},
    )
    result = train(config, show_progress=False)
    assert result.epochs_done == 1 and (result.best_model_dir / "model.safetensors").is_file()
    assert result.dev_metrics["event_macro_f1"] is not None

    run = mlflow.get_run(result.run_id)
    logged = {item.dataset.name: item.dataset for item in run.inputs.dataset_inputs}
    assert set(logged) == {"train", "dev"}
    # The MLflow datasets are the corpus's typed datasets (mlflow.data.from_huggingface), schema included.
    assert logged["train"].source_type == "local"
    columns = {column["name"] for column in json.loads(logged["train"].schema)["mlflow_colspec"]}
    assert {"id", "text", "event", "has_event", "actors", "has_actors", "source"} <= columns
    rows = {name: json.loads(dataset.profile)["num_rows"] for name, dataset in logged.items()}
    assert rows["train"] + rows["dev"] == 40 and rows["dev"] >= 1
