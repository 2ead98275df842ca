"""The event TSV reader on the real ConfliBERT files and on crafted bad files (messages verbatim)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from conflict_events.config import load_config
from conflict_events.corpora.tsv import read_event_tsv

REPO = Path(__file__).parents[1]
CONFLIBERT = REPO / ".." / "shared" / "data" / "conflibert"
BAD = REPO / "tests" / "resources" / "bad"
needs_shared_data = pytest.mark.skipif(
    not CONFLIBERT.is_dir(), reason=f"shared corpora not found at {CONFLIBERT} (expected beside the clone)"
)
CAMEO = load_config(REPO / "configs" / "cameo.yaml").label_schema
SATP = load_config(REPO / "configs" / "satp.yaml").label_schema


def messages(issues) -> list[str]:
    return [str(issue) for issue in issues]


def read_bad(name: str, labels=CAMEO):
    return read_event_tsv(BAD / name, labels, display=name)


@needs_shared_data
def test_reads_the_real_cameo_class_file():
    examples, issues = read_event_tsv(CONFLIBERT / "cameo_class" / "train.tsv", CAMEO, "cameo_class/train.tsv")
    assert issues == []
    assert len(examples) == 1349
    assert Counter(e.event for e in examples) == {
        "neutral": 240,
        "verbal_cooperation": 248,
        "material_cooperation": 303,
        "verbal_conflict": 337,
        "material_conflict": 221,
    }
    first = examples[0]
    assert first.id == "cameo_class/train.tsv:1"
    assert first.text.startswith("In September, a car bomb in Kiev")
    assert first.event == "material_conflict" and first.actors is None
    # CRLF stripped; typographic characters kept as they are.
    assert not any("\r" in e.text for e in examples)
    assert "\u02bc" in examples[1].text


@needs_shared_data
def test_reads_the_real_satp_multilabel_file():
    examples, issues = read_event_tsv(CONFLIBERT / "satp_relevant" / "train.tsv", SATP, "satp_relevant/train.tsv")
    assert issues == []
    assert len(examples) == 1085
    assert all(isinstance(e.event, frozenset) and e.event for e in examples)
    assert Counter(name for e in examples for name in e.event) == {
        "armed_assault": 437,
        "bombing_explosion": 419,
        "kidnapping": 94,
        "other": 277,
    }


def test_truncated_and_overlong_lines_are_errors():
    examples, issues = read_bad("class_truncated.tsv")
    assert [e.text for e in examples] == ["Rebels attacked a convoy near the border."]
    assert messages(issues) == [
        "error: class_truncated.tsv:2: expected 2 tab-separated columns (sentence, label), found 1",
        "error: class_truncated.tsv:3: expected 2 tab-separated columns (sentence, label), found 3",
    ]


def test_unknown_and_empty_labels_are_errors():
    examples, issues = read_bad("class_unknown_label.tsv")
    assert examples == []
    assert messages(issues) == [
        "error: class_unknown_label.tsv:1 [label]: unknown event label '7' (known codes: 0, 1, 2, 3, 4)",
        "error: class_unknown_label.tsv:2 [label]: unknown event label 'war' (known names: neutral, "
        "verbal_cooperation, material_cooperation, verbal_conflict, material_conflict)",
        "error: class_unknown_label.tsv:3 [label]: empty event label",
    ]


def test_empty_text_is_an_error():
    examples, issues = read_bad("class_empty_text.tsv")
    assert len(examples) == 1
    assert messages(issues) == ["error: class_empty_text.tsv:1 [text]: empty sentence"]


def test_empty_file_is_an_error():
    assert messages(read_bad("empty.tsv").issues) == ["error: empty.tsv: empty file"]


def test_missing_file_is_an_error(tmp_path):
    result = read_event_tsv(tmp_path / "absent.tsv", CAMEO, "absent.tsv")
    assert messages(result.issues) == [f"error: absent.tsv: file not found ({tmp_path / 'absent.tsv'})"]


def test_non_utf8_bytes_cost_one_line_and_are_located():
    examples, issues = read_bad("class_non_utf8.tsv")
    assert [e.source.line for e in examples] == [1, 3]
    assert messages(issues) == [
        "error: class_non_utf8.tsv:2: not valid UTF-8: byte 0xff at byte 13 of the line (byte 57 of the file); "
        "the line is skipped"
    ]


def test_crlf_line_ends_and_class_names_are_accepted():
    examples, issues = read_bad("class_crlf.tsv")
    assert issues == []
    assert [(e.text, e.event) for e in examples] == [
        ("Police arrested the group\u2019s leader.", "material_conflict"),
        ("The minister praised the agreement.", "verbal_cooperation"),
    ]


def test_blank_line_is_reported_not_silently_skipped():
    examples, issues = read_bad("class_blank_line.tsv")
    assert len(examples) == 2
    assert messages(issues) == ["warning: class_blank_line.tsv:2: blank line (skipped)"]


def test_multilabel_flags_must_be_0_or_1_and_columns_complete():
    examples, issues = read_bad("satp_bad.tsv", SATP)
    assert [e.event for e in examples] == [frozenset({"armed_assault"})]
    assert messages(issues) == [
        "error: satp_bad.tsv:2 [bombing_explosion]: expected 0 or 1, got '2'",
        "error: satp_bad.tsv:3: expected 5 tab-separated columns (sentence, armed_assault, bombing_explosion, "
        "kidnapping, other), found 4",
    ]
