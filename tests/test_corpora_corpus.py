"""load_corpus / load_split, cross-split validation (duplicates, leakage) and statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conflict_events.config import Config, config_from_mapping, load_config
from conflict_events.corpora import corpus_stats, load_corpus, load_split
from conflict_events.corpora.normalise import near_duplicate_key
from conflict_events.corpora.stats import format_stats, percentiles
from conflict_events.errors import DataError

REPO = Path(__file__).parents[1]
CONFLIBERT = REPO / ".." / "shared" / "data" / "conflibert"
needs_shared_data = pytest.mark.skipif(
    not CONFLIBERT.is_dir(), reason=f"shared corpora not found at {CONFLIBERT} (expected beside the clone)"
)
LABELS = {
    "event_classes": [{"code": 0, "name": "neutral"}, {"code": 4, "name": "material_conflict"}],
    "actor_roles": [{"tag": "S", "name": "source"}, {"tag": "T", "name": "target"}],
}


def cameo_config(*overrides: str) -> Config:
    return load_config(REPO / "configs" / "cameo.yaml", overrides=list(overrides), data_root=str(CONFLIBERT))


def jsonl_config(root: Path, **data) -> Config:
    return config_from_mapping({"data": {"root": str(root), **data}, "labels": LABELS})


def write_records(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")


def record(i: int, text: str, event: str = "neutral") -> dict:
    return {"id": f"r{i}", "text": text, "event": event}


@pytest.fixture(scope="module")
def cameo_corpus():
    return load_corpus(cameo_config())


@needs_shared_data
def test_cameo_corpus_loads_with_a_carved_dev_split(cameo_corpus):
    corpus = cameo_corpus
    assert (len(corpus.train), len(corpus.dev), corpus.test) == (1337, 236, None)
    assert corpus.dev_origin == "carved from train (fraction 0.15, seed 13)"
    assert corpus.errors == [] and len(corpus.warnings) == 9
    report = corpus.merges["train"]
    assert (report.matched, report.events_only, report.actors_only) == (923, 422, 228)
    # No sentence of dev has a near-duplicate or a reworded twin in train.
    train_keys = {near_duplicate_key(e.text) for e in corpus.train}
    assert not any(near_duplicate_key(e.text) in train_keys for e in corpus.dev)
    dev_ids = {e.id for e in corpus.dev}
    assert all((pair.events_id in dev_ids) == (pair.actors_id in dev_ids) for pair in report.revised)
    # Same split on every load.
    assert [e.id for e in load_corpus(cameo_config()).dev] == [e.id for e in corpus.dev]


@needs_shared_data
def test_max_train_examples_limits_train_but_not_dev():
    corpus = load_corpus(cameo_config("data.max_train_examples=50"))
    assert len(corpus.train) == 50 and len(corpus.dev) == 236


@needs_shared_data
def test_invalid_bio_fails_loading_unless_repaired():
    with pytest.raises(DataError) as raised:
        load_corpus(cameo_config("data.repair_bio=false"))
    errors = [issue for issue in raised.value.issues if issue.severity == "error"]
    assert [str(issue.location) for issue in errors] == [
        "cameo_ner/train.txt:17911 [tag]",
        "cameo_ner/train.txt:17938 [tag]",
        "cameo_ner/train.txt:26328 [tag]",
    ]


@needs_shared_data
def test_cameo_stats(cameo_corpus):
    stats = corpus_stats(cameo_corpus)
    train = stats["splits"]["train"]
    assert train["layers"] == {"joint": 782, "event_only": 359, "actors_only": 196, "unlabeled": 0}
    assert train["events"][0] == {"code": 0, "name": "neutral", "count": 202}
    assert [entry["tag"] for entry in train["actor_spans"]] == ["S", "T", "R"]
    assert train["length_tokens"]["p50"] == 24
    text = format_stats(stats)
    assert "Event classes" in text and "material_conflict" in text and "Sentence length (characters)" in text


def test_missing_train_is_an_error_and_absent_test_is_not(tmp_path):
    config = jsonl_config(tmp_path, train={"jsonl": "train.jsonl"}, test={"jsonl": "test.jsonl"})
    corpus = load_corpus(config, strict=False)
    assert [str(issue) for issue in corpus.errors] == [f"error: train.jsonl: file not found ({tmp_path / 'train.jsonl'})"]
    assert corpus.test is None
    with pytest.raises(DataError):
        load_corpus(config)


def test_partly_absent_test_split_is_a_warning(tmp_path):
    (tmp_path / "test.tsv").write_text("Talks resumed.\t0\n", encoding="utf-8")
    write_records(tmp_path / "train.jsonl", [record(i, f"Sentence {i}.") for i in range(10)])
    config = jsonl_config(tmp_path, train={"jsonl": "train.jsonl"}, test={"events": "test.tsv", "actors": "test.txt"})
    corpus = load_corpus(config)
    assert [e.text for e in corpus.test] == ["Talks resumed."]
    assert [str(issue) for issue in corpus.warnings] == [
        f"warning: test.txt: test file not found ({tmp_path / 'test.txt'}); test is read without it"
    ]


def test_leakage_between_splits_names_both_files_and_lines(tmp_path):
    write_records(tmp_path / "train.jsonl", [record(1, "Rebels attacked a convoy."), record(2, "Talks resumed in Geneva.")])
    write_records(tmp_path / "dev.jsonl", [record(1, "Rebels attacked a convoy."), record(2, "talks resumed in GENEVA")])
    config = jsonl_config(tmp_path, train={"jsonl": "train.jsonl"}, dev={"jsonl": "dev.jsonl"})
    corpus = load_corpus(config, strict=False)
    assert [str(issue) for issue in corpus.errors] == [
        "error: dev.jsonl:1 [text]: dev sentence is an exact duplicate of train sentence train.jsonl:1 (leakage)",
        "error: dev.jsonl:2 [text]: dev sentence is a near-duplicate (same words) of train sentence train.jsonl:2 (leakage)",
    ]


def test_duplicates_within_a_file(tmp_path):
    write_records(
        tmp_path / "train.jsonl",
        [
            record(1, "Rebels attacked a convoy."),
            record(2, "Rebels attacked a convoy."),
            record(3, "Talks resumed."),
            record(4, "Talks resumed.", "material_conflict"),
        ],
    )
    corpus = load_corpus(jsonl_config(tmp_path, train={"jsonl": "train.jsonl"}), strict=False)
    assert [str(issue) for issue in corpus.issues] == [
        "warning: train.jsonl:2 [text]: exact duplicate of line 1 with the same labels; only line 1 is kept",
        "error: train.jsonl:4 [text]: exact duplicate of line 3 but with different labels "
        "(event material_conflict, actors unlabeled vs event neutral, actors unlabeled)",
    ]


def test_load_split_reads_one_split_as_in_its_files(tmp_path):
    write_records(tmp_path / "train.jsonl", [record(i, f"Sentence {i}.") for i in range(10)])
    config = jsonl_config(tmp_path, train={"jsonl": "train.jsonl"})
    assert len(load_split(config, "train")) == 10
    assert load_split(config, "test") is None


def test_percentiles_use_nearest_rank():
    assert percentiles([]) == {}
    assert percentiles(list(range(1, 101))) == {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p100": 100, "mean": 50.5}
