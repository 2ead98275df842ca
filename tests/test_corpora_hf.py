"""Corpora as Hugging Face datasets: typed features, a lossless round trip (property test over every layer
present, empty or missing), bad rows named, and a split read from a dataset saved to disk or a hub id
through the config (the hub is never reached: its loader is replaced)."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conflict_events.config import config_from_mapping, load_config
from conflict_events.corpora import hf, load_corpus
from conflict_events.corpora.hf import KNOWN_COLUMNS, dataset_features, from_dataset, read_dataset, to_dataset
from conflict_events.corpora.jsonl import example_from_record
from conflict_events.errors import ConfigError, DataError
from conflict_events.labels import LabelSchema
from conflict_events.schema import ActorSpan, EventExample, Filler, SourceRef, Token
from conflict_events.training.testing import tiny_config_mapping, tiny_examples

REPO = Path(__file__).parents[1]
CAMEO = load_config(REPO / "configs" / "cameo.yaml").label_schema
SATP = load_config(REPO / "configs" / "satp.yaml").label_schema  # multilabel, no actor roles
MULTILABEL_WITH_ROLES = LabelSchema(SATP.event_classes, CAMEO.actor_roles, multilabel=True)
SOME = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def messages(issues) -> list[str]:
    return [str(issue) for issue in issues]


def tiny_corpus(count: int = 40) -> list[EventExample]:
    schema = config_from_mapping(tiny_config_mapping(Path("."), "encoder", Path("ckpt"))).label_schema
    return [example_from_record(record, schema, SourceRef("events.jsonl", line)) for line, record in enumerate(tiny_examples(count), 1)]


# --- examples with and without each layer ----------------------------------------------------------
@st.composite
def examples(draw, schema, count: int = 4) -> list[EventExample]:
    drawn = []
    for index in range(draw(st.integers(1, count))):
        words = draw(st.lists(st.text(st.characters(codec="utf-8", exclude_categories=["Z", "C"]), min_size=1, max_size=6), min_size=1, max_size=6))
        text = " ".join(words)
        cuts, cursor = [], 0
        for word in words:
            cuts.append((cursor, cursor + len(word)))
            cursor += len(word) + 1
        tokens = [Token(text[a:b], a, b) for a, b in cuts] if draw(st.booleans()) else []
        roles = schema.role_tags
        actors = None
        if draw(st.booleans()):  # labeled: possibly no actors; spans on distinct words never overlap
            chosen = draw(st.lists(st.sampled_from(range(len(cuts))), unique=True, max_size=len(cuts) if roles else 0))
            actors = [ActorSpan(draw(st.sampled_from(roles)), *cuts[word]) for word in chosen]
        names = schema.event_names
        if schema.multilabel:
            event = draw(st.none() | st.frozensets(st.sampled_from(names)))  # frozenset(): labeled, no class
        else:
            event = draw(st.none() | st.sampled_from(names))
        filler = st.builds(Filler, st.sampled_from(roles or ["-"]), st.lists(st.sampled_from(words), min_size=1, max_size=3).map(tuple))
        fillers = draw(st.none() | st.lists(filler, max_size=3 if roles else 0).map(tuple))
        source = draw(st.none() | st.builds(SourceRef, st.sampled_from(["train.tsv", "muc4/dev.json"]), st.integers(0, 10**6)))
        drawn.append(EventExample(f"ex-{index}", text, tokens, event, actors, source, fillers))
    return drawn


@SOME
@given(examples(CAMEO))
def test_multiclass_examples_round_trip_through_a_dataset_with_every_layer_present_empty_or_missing(original):
    result = from_dataset(to_dataset(original, CAMEO), CAMEO, "corpus")
    assert result.issues == []
    assert result.examples == original


@SOME
@given(st.sampled_from([SATP, MULTILABEL_WITH_ROLES]).flatmap(lambda schema: st.tuples(st.just(schema), examples(schema))))
def test_multilabel_examples_round_trip_through_a_dataset(drawn):
    schema, original = drawn
    result = from_dataset(to_dataset(original, schema), schema, "corpus")
    assert result.issues == []
    assert result.examples == original


def test_the_features_are_typed_and_a_missing_layer_is_flagged_not_emptied():
    multiclass = dataset_features(CAMEO)
    assert isinstance(multiclass["event"], datasets.ClassLabel) and multiclass["event"].names == CAMEO.event_names
    assert dataset_features(SATP)["event"].feature.names == SATP.event_names  # a list of ClassLabel
    actor = multiclass["actors"].feature
    assert actor["role"].names == CAMEO.role_tags and actor["char_start"] == datasets.Value("int32")
    assert list(multiclass) == list(KNOWN_COLUMNS)

    unlabeled = EventExample("u", "Talks resumed.", source=SourceRef("train.tsv", 3))
    labeled_empty = EventExample("e", "Talks resumed.", event="verbal_cooperation", actors=[], fillers=())
    rows = to_dataset([unlabeled, labeled_empty], CAMEO)
    assert rows[0] | {"text": None} == {
        "id": "u", "text": None, "tokens": [], "event": -1, "has_event": False, "actors": [], "has_actors": False,
        "fillers": [], "has_fillers": False, "source": {"path": "train.tsv", "line": 3},
    }
    assert (rows[1]["actors"], rows[1]["has_actors"], rows[1]["fillers"], rows[1]["has_fillers"]) == ([], True, [], True)
    assert rows[1]["source"] is None


def test_an_example_the_schema_cannot_hold_is_refused_naming_it():
    with pytest.raises(DataError, match=r"train.tsv:4 \[event\]: unknown event class 'riot'"):
        to_dataset([EventExample("x", "A riot.", event="riot", source=SourceRef("train.tsv", 4))], CAMEO)
    with pytest.raises(DataError, match=r"example x \[actors\]: unknown actor role 'Z'"):
        to_dataset([EventExample("x", "A riot.", actors=[ActorSpan("Z", 0, 1)])], CAMEO)


def test_bad_rows_are_errors_naming_the_row_and_the_field():
    good = to_dataset(tiny_corpus(3), CAMEO).to_list()
    good[1]["actors"] = [{"role": 0, "char_start": 30, "char_end": 90}]
    good[2]["text"] = "  "
    rows = good + [dict(good[0])]  # a repeated id
    result = from_dataset(datasets.Dataset.from_list(rows, features=dataset_features(CAMEO)), CAMEO, "tiny")
    assert [example.id for example in result.examples] == ["tiny-000"]
    assert messages(result.issues) == [
        "error: tiny row 1 [actors[0]]: offsets 30:90 are outside the text (length 40) or empty",
        "error: tiny row 2 [text]: empty sentence",
        "error: tiny row 3 [id]: duplicate id 'tiny-000' (first used in row 0)",
    ]


def test_a_dataset_made_elsewhere_needs_only_id_and_text_and_reads_labels_by_name():
    # String labels, a ClassLabel in another order than the config's, no has_* or source column, an extra column.
    roles = datasets.ClassLabel(names=["T", "S"])
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "text": datasets.Value("string"),
            "event": datasets.Value("string"),
            "actors": [{"role": roles, "char_start": datasets.Value("int64"), "char_end": datasets.Value("int64")}],
            "lang": datasets.Value("string"),
        }
    )
    rows = [
        {"id": "a", "text": "Rebels attacked the army.", "event": "material_conflict", "actors": [{"role": 1, "char_start": 0, "char_end": 6}], "lang": "en"},
        {"id": "b", "text": "Talks resumed.", "event": None, "actors": None, "lang": "en"},
        {"id": "c", "text": "A riot.", "event": "riot", "actors": [], "lang": "en"},
    ]
    result = from_dataset(datasets.Dataset.from_list(rows, features=features), CAMEO, "hub")
    assert [(e.id, e.event, e.actors, e.source) for e in result.examples] == [
        ("a", "material_conflict", [ActorSpan("S", 0, 6)], SourceRef("hub", 0)),
        ("b", None, None, SourceRef("hub", 1)),
    ]
    assert messages(result.issues)[0].startswith("warning: hub [lang]: unknown column 'lang' ignored")
    assert messages(result.issues)[1].startswith("error: hub row 2 [event]: unknown event label 'riot'")
    missing = from_dataset(datasets.Dataset.from_list([{"sentence": "x"}]), CAMEO, "hub")
    assert messages(missing.issues)[-1] == "error: hub [id, text]: the dataset has no column 'id', 'text' (columns: sentence)"


# --- the config's `dataset:` kind --------------------------------------------------------------------
def dataset_config(root: Path, **data) -> object:
    mapping = tiny_config_mapping(root, "encoder", root / "ckpt")
    mapping["data"].update(data)
    return config_from_mapping(mapping)


def test_a_split_may_be_a_dataset_saved_to_disk(tmp_path):
    corpus = tiny_corpus()
    to_dataset(corpus, CAMEO).save_to_disk(tmp_path / "tiny_ds")
    config = dataset_config(tmp_path, train={"dataset": "tiny_ds"})
    loaded = load_corpus(config)
    assert sorted(e.id for e in loaded.train + loaded.dev) == [e.id for e in corpus]
    assert loaded.issues == []
    # the examples keep the source they had when written (the original file and line)
    assert {e.source for e in loaded.train} <= {e.source for e in corpus}


def test_a_test_split_dataset_that_is_absent_is_no_test_split(tmp_path):
    to_dataset(tiny_corpus(), CAMEO).save_to_disk(tmp_path / "tiny_ds")
    config = dataset_config(tmp_path, train={"dataset": "tiny_ds"}, test={"dataset": "held_out_ds"})
    assert load_corpus(config).test is None
    assert config.data.exists("dataset", "tiny_ds") and not config.data.exists("dataset", "held_out_ds")
    assert config.data.exists("dataset", "hf:someone/tiny")  # known only when loaded


def test_a_test_split_dataset_is_available_to_evaluate_and_listed_in_the_run_inputs(tmp_path):
    from conflict_events.training.evaluation_data import SplitUnavailableError, require_split
    from conflict_events.training.reports import input_files

    to_dataset(tiny_corpus(), CAMEO).save_to_disk(tmp_path / "tiny_ds")
    config = dataset_config(tmp_path, train={"dataset": "tiny_ds"}, test={"dataset": "tiny_ds"})
    require_split(config, "test")  # a folder, not a file: available
    assert [entry.get("kind") for entry in input_files(config)] == ["dataset", "dataset"]
    absent = dataset_config(tmp_path, train={"dataset": "tiny_ds"}, test={"dataset": "held_out_ds"})
    with pytest.raises(SplitUnavailableError, match="held_out_ds not found"):
        require_split(absent, "test")


def test_a_folder_that_is_not_a_dataset_and_a_dataset_dict_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    assert messages(read_dataset("gone", tmp_path, CAMEO, "train").issues) == [
        f"error: gone: dataset folder not found ({tmp_path / 'gone'}); expected the output of Dataset.save_to_disk"
    ]
    assert messages(read_dataset("empty", tmp_path, CAMEO, "train").issues)[0].startswith(
        "error: empty: not a dataset saved with Dataset.save_to_disk"
    )
    datasets.DatasetDict({"train": to_dataset(tiny_corpus(2), CAMEO)}).save_to_disk(tmp_path / "dict")
    assert messages(read_dataset("dict", tmp_path, CAMEO, "train").issues) == [
        "error: dict: a DatasetDict (splits: train); name one split's folder, e.g. dict/train"
    ]


def test_a_hub_id_is_loaded_with_its_split_and_an_unloadable_one_is_an_error_naming_it(tmp_path, monkeypatch):
    asked = []

    def offline(name, split):
        asked.append((name, split))
        if name == "someone/tiny":
            return to_dataset(tiny_corpus(), CAMEO)
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    config = dataset_config(tmp_path, train={"dataset": "hf:someone/tiny"}, dev={"dataset": "hf:someone/tiny:dev"})
    with pytest.raises(DataError):  # dev is train here: every dev sentence leaks
        load_corpus(config)
    assert asked == [("someone/tiny", "train"), ("someone/tiny", "dev")]
    result = read_dataset("hf:someone/missing", tmp_path, CAMEO, "dev")
    assert asked[-1] == ("someone/missing", "validation")  # the hub's name for dev
    assert messages(result.issues) == [
        "error: hf:someone/missing: cannot load hub dataset 'someone/missing' (split 'validation'): Couldn't reach "
        "'someone/missing' on the Hub (LocalEntryNotFoundError). Offline, only a dataset already in the Hugging Face "
        "cache can be loaded; or save it with Dataset.save_to_disk and name the folder"
    ]
    assert hf.is_hub_reference("hf:someone/tiny") and not hf.is_hub_reference("tiny_ds")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"dataset": "tiny_ds", "events": "train.tsv"}, "'dataset' cannot be combined with other files in one split"),
        ({"dataset": "hf:"}, "'dataset' 'hf:' is not a hub reference: expected hf:owner/name or hf:owner/name:split"),
        ({"dataset": "hf:a/b:c:d"}, "is not a hub reference"),
    ],
)
def test_the_config_checks_the_dataset_kind(tmp_path, files, message):
    with pytest.raises(ConfigError, match=message):
        dataset_config(tmp_path, train=files)
