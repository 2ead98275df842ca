"""The MUC-4 reader: every occurrence of every filler mention becomes a span, fillers stay whole for scoring,
and every problem names the file, the document's line and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conflict_events.config import config_from_mapping
from conflict_events.corpora import load_corpus
from conflict_events.corpora.muc4 import read_muc4
from conflict_events.errors import ConfigError
from conflict_events.labels import ActorRole, EventClass, LabelSchema
from conftest import requires_shared_data

ROLES = ("perp_individual_id", "perp_organization_id", "phys_tgt_id", "hum_tgt_name", "incident_instrument_id")
SCHEMA = LabelSchema((EventClass(0, "no_event_layer"),), tuple(ActorRole(tag, tag) for tag in ROLES))

DOCUMENT = (
    "TERRORISTS OF THE FMLN ATTACKED THE LAS CANAS\nBRIDGE WITH MORTAR FIRE.  THE Terrorists FLED.\n"
    "NO MORTARMEN WERE SEEN.  THE FMLN DENIED IT."
)


def write(path: Path, documents: dict) -> Path:
    path.write_text(json.dumps(documents, indent=4), encoding="utf-8")
    return path


def spans_of(example) -> list[tuple[str, str]]:
    return [(span.role, example.text[span.char_start : span.char_end]) for span in example.actors]


def test_every_occurrence_is_found_case_insensitively_across_line_breaks_on_word_boundaries(tmp_path):
    roles = {"perp_individual_id": [["TERRORISTS"]], "phys_tgt_id": [["LAS CANAS BRIDGE"]], "incident_instrument_id": [["MORTAR"]]}
    result = read_muc4(write(tmp_path / "train.json", {"DOC-1": {"doc": DOCUMENT, "roles": roles}}), SCHEMA)
    assert not result.issues
    (example,) = result.examples
    assert spans_of(example) == [
        ("perp_individual_id", "TERRORISTS"),
        ("phys_tgt_id", "LAS CANAS\nBRIDGE"),
        ("incident_instrument_id", "MORTAR"),
        ("perp_individual_id", "Terrorists"),
    ]  # "MORTARMEN" is not an occurrence of "MORTAR"
    assert example.event is None and example.id == "DOC-1"
    assert [(f.role, f.mentions) for f in example.fillers] == [
        ("perp_individual_id", ("TERRORISTS",)), ("phys_tgt_id", ("LAS CANAS BRIDGE",)), ("incident_instrument_id", ("MORTAR",))
    ]


def test_overlapping_occurrences_keep_the_longer_and_report_what_another_role_lost(tmp_path):
    roles = {
        "perp_individual_id": [["TERRORISTS OF THE FMLN", "TERRORISTS"]],
        "perp_organization_id": [["FMLN", "FARABUNDO MARTI NATIONAL LIBERATION FRONT"]],
    }
    result = read_muc4(write(tmp_path / "train.json", {"DOC-1": {"doc": DOCUMENT, "roles": roles}}), SCHEMA)
    (example,) = result.examples
    assert spans_of(example) == [
        ("perp_individual_id", "TERRORISTS OF THE FMLN"),
        ("perp_individual_id", "Terrorists"),
        ("perp_organization_id", "FMLN"),
    ]
    # "TERRORISTS" inside the longer perpetrator mention loses nothing; the organisation "FMLN" inside it does.
    (issue,) = result.issues
    assert issue.severity == "warning" and issue.location.line == 2 and issue.location.field == "DOC-1"
    assert "1 overlapping mention occurrence(s)" in issue.message and "perp_organization_id 'FMLN'@18" in issue.message


def test_a_filler_that_does_not_occur_stays_a_filler_with_a_warning(tmp_path):
    roles = {"hum_tgt_name": [["ENRIQUE LOPEZ ALBUJAR"]], "perp_organization_id": [["FMLN"]]}
    result = read_muc4(write(tmp_path / "dev.json", {"DOC-1": {"doc": DOCUMENT, "roles": roles}}), SCHEMA, "muc4/dev.json")
    (example,) = result.examples
    assert [f.role for f in example.fillers] == ["hum_tgt_name", "perp_organization_id"]
    assert spans_of(example) == [("perp_organization_id", "FMLN"), ("perp_organization_id", "FMLN")]
    assert [str(issue) for issue in result.issues] == [
        "warning: muc4/dev.json:2 [DOC-1.roles.hum_tgt_name]: filler 'ENRIQUE LOPEZ ALBUJAR' does not occur in the document"
    ]


def test_bad_documents_are_errors_naming_line_and_field_and_the_rest_is_read(tmp_path):
    documents = {
        "GOOD": {"doc": DOCUMENT, "roles": {"perp_organization_id": [["FMLN"]]}},
        "TYPO": {"doc": DOCUMENT, "roles": {"perp_org": [["FMLN"]]}},
        "EMPTY": {"doc": "  ", "roles": {}},
        "FLAT": {"doc": DOCUMENT, "roles": {"phys_tgt_id": ["BRIDGE"]}},
    }
    path = write(tmp_path / "train.json", documents)
    result = read_muc4(path, SCHEMA, "train.json")
    assert [example.id for example in result.examples] == ["GOOD"]
    lines = path.read_text().splitlines()
    line_of = {key: 1 + next(i for i, line in enumerate(lines) if line.strip().startswith(f'"{key}": {{')) for key in documents}
    messages = [(issue.location.line, issue.location.field, issue.severity) for issue in result.issues]
    assert messages == [
        (line_of["TYPO"], "TYPO.roles.perp_org", "error"),
        (line_of["EMPTY"], "EMPTY.doc", "error"),
        (line_of["FLAT"], "FLAT.roles.phys_tgt_id", "error"),
    ]
    assert "unknown role 'perp_org'" in result.issues[0].message


def test_a_file_that_is_not_json_is_one_error_with_its_line(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('{\n  "DOC-1": {"doc": "x",\n}\n')
    result = read_muc4(path, SCHEMA, "train.json")
    assert result.examples == [] and len(result.issues) == 1
    assert result.issues[0].location.line == 3 and "not valid JSON" in result.issues[0].message


def test_a_config_reads_fillers_splits_and_the_policy_drops_train_documents_also_in_dev(tmp_path):
    shared = {"doc": DOCUMENT, "roles": {"perp_organization_id": [["FMLN"]]}}
    other = {"doc": "GUERRILLAS BLEW UP A BUS.", "roles": {"perp_individual_id": [["GUERRILLAS"]], "phys_tgt_id": [["BUS"]]}}
    write(tmp_path / "train.json", {"TRAIN-1": shared, "TRAIN-2": other})
    write(tmp_path / "dev.json", {"DEV-1": shared})
    mapping = {
        "data": {"root": str(tmp_path), "train": {"fillers": "train.json"}, "dev": {"fillers": "dev.json"},
                 "test": {"fillers": "test.json"}, "policy": {"leakage": "drop_from_earlier_split"}},
        "labels": {"event_classes": [{"code": 0, "name": "no_event_layer"}], "actor_roles": [{"tag": t, "name": t} for t in ROLES]},
        "training": {"selection_metric": "filler_f1"},
    }
    corpus = load_corpus(config_from_mapping(mapping, source="<test>"))
    assert [e.id for e in corpus.train] == ["TRAIN-2"] and [e.id for e in corpus.dev] == ["DEV-1"]
    assert corpus.test is None
    assert corpus.policy_report.counts()["leakage"] == {"train": 1, "dev": 0, "test": 0}


def test_fillers_cannot_be_combined_with_other_files_in_a_split():
    with pytest.raises(ConfigError, match="'fillers' cannot be combined"):
        config_from_mapping({"data": {"train": {"fillers": "a.json", "events": "b.tsv"}}}, source="<test>")


@requires_shared_data()
def test_the_upstream_files_load_with_the_shipped_config():
    from conflict_events.config import load_config

    corpus = load_corpus(load_config(Path(__file__).resolve().parents[1] / "configs" / "muc4.yaml"))
    assert len(corpus.dev) == 200 and len(corpus.train) >= 1290
    assert all(example.fillers is not None and example.event is None for example in corpus.dev)
    # Every span is an occurrence of a mention of a filler of its role.
    for example in corpus.dev:
        mentions = {(f.role, " ".join(m.lower().split())) for f in example.fillers for m in f.mentions}
        for span in example.actors:
            assert (span.role, " ".join(example.text[span.char_start : span.char_end].lower().split())) in mentions
    assert sum(len(example.actors) for example in corpus.dev) > 300
