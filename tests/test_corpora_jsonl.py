"""The canonical JSONL format: round trip through write/read, bad records reported verbatim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conflict_events.config import load_config
from conflict_events.corpora.jsonl import read_jsonl, write_jsonl
from conflict_events.schema import ActorSpan, EventExample, Token

REPO = Path(__file__).parents[1]
BAD = REPO / "tests" / "resources" / "bad"
SAMPLE = REPO / "data" / "sample" / "events.jsonl"
CAMEO = load_config(REPO / "configs" / "cameo.yaml").label_schema
SATP = load_config(REPO / "configs" / "satp.yaml").label_schema


def messages(issues) -> list[str]:
    return [str(issue) for issue in issues]


def test_round_trip_keeps_every_layer_and_the_unlabeled_distinction(tmp_path):
    text = "Rebels attacked the convoy\u2019s escort."
    examples = [
        EventExample(
            "joint", text, [Token("Rebels", 0, 6)], "material_conflict", [ActorSpan("S", 0, 6), ActorSpan("T", 20, 35)]
        ),
        EventExample("event-only", "Talks resumed.", event="verbal_cooperation"),
        EventExample("no-actors", "Talks resumed in Geneva.", actors=[]),
    ]
    path = tmp_path / "events.jsonl"
    assert write_jsonl(examples, path) == 3
    first_line = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first_line["actors"][1] == {"role": "T", "char_start": 20, "char_end": 35, "text": "convoy\u2019s escort"}
    read_back, issues = read_jsonl(path, CAMEO, "events.jsonl")
    assert issues == []
    assert [(e.id, e.text, e.tokens, e.event, e.actors) for e in read_back] == [
        (e.id, e.text, e.tokens, e.event, e.actors) for e in examples
    ]
    assert read_back[1].actors is None and read_back[2].actors == [] and read_back[2].event is None


def test_multilabel_events_are_lists_of_names(tmp_path):
    path = tmp_path / "satp.jsonl"
    write_jsonl([EventExample("1", "A bomb went off.", event=frozenset({"bombing_explosion", "other"}))], path)
    assert json.loads(path.read_text())["event"] == ["bombing_explosion", "other"]
    examples, issues = read_jsonl(path, SATP, "satp.jsonl")
    assert issues == [] and examples[0].event == frozenset({"bombing_explosion", "other"})
    examples, issues = read_jsonl(path, CAMEO, "satp.jsonl")
    assert messages(issues) == [
        "error: satp.jsonl:1 [event]: expected a class name string (labels.task is multiclass), "
        "got ['bombing_explosion', 'other']"
    ]


def test_bad_records_are_reported_with_line_and_field():
    examples, issues = read_jsonl(BAD / "events_bad.jsonl", CAMEO, "events_bad.jsonl")
    assert [e.id for e in examples] == ["a1", "a8"]
    assert messages(issues) == [
        "error: events_bad.jsonl:2 [event]: unknown event label 'war' (known names: neutral, verbal_cooperation, "
        "material_cooperation, verbal_conflict, material_conflict)",
        "error: events_bad.jsonl:3 [text]: empty sentence",
        "error: events_bad.jsonl:4 [actors[0]]: text 'Polic' does not match text[0:6] = 'Police'",
        "error: events_bad.jsonl:5 [actors[0]]: unknown actor role 'Q' (known roles: S, T, R)",
        "error: events_bad.jsonl:6 [actors[0]]: offsets 0:60 are outside the text (length 12) or empty",
        "error: events_bad.jsonl:7 [id]: duplicate id 'a1' (first used on line 1)",
        "error: events_bad.jsonl:8: not valid JSON: Expecting ',' delimiter (column 38)",
        "error: events_bad.jsonl:9: expected a JSON object, got list",
        "warning: events_bad.jsonl:10 [evnt]: unknown key 'evnt' ignored (known keys: id, text, event, actors, tokens, fillers)",
    ]


def test_overlapping_actor_spans_are_an_error(tmp_path):
    record = {"id": "x", "text": "Rebel leaders met.", "actors": [
        {"role": "S", "char_start": 0, "char_end": 13}, {"role": "T", "char_start": 6, "char_end": 13}]}
    path = tmp_path / "overlap.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    assert messages(read_jsonl(path, CAMEO, "overlap.jsonl").issues) == [
        "error: overlap.jsonl:1 [actors[1]]: overlaps actors[0]"
    ]


def test_crlf_and_non_utf8_lines(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"id": "1", "text": "Talks resumed."}\r\n{"id": "2", "text": "Bad \xff byte."}\r\n')
    examples, issues = read_jsonl(path, CAMEO, "mixed.jsonl")
    assert [e.text for e in examples] == ["Talks resumed."]
    assert messages(issues) == [
        "error: mixed.jsonl:2: not valid UTF-8: byte 0xff at byte 25 of the line (byte 64 of the file); "
        "the line is skipped"
    ]


@pytest.mark.skipif(not SAMPLE.is_file(), reason="data/sample/events.jsonl not written yet")
def test_the_sample_corpus_reads_cleanly():
    examples, issues = read_jsonl(SAMPLE, CAMEO, "events.jsonl")
    assert [issue for issue in issues if issue.severity == "error"] == []
    assert examples
