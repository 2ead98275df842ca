"""The CoNLL BIO reader on the real CAMEO/re3d files and on crafted bad files (messages verbatim)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from conflict_events.config import load_config
from conflict_events.corpora.conll import read_conll
from conflict_events.schema import ActorSpan

REPO = Path(__file__).parents[1]
CONFLIBERT = REPO / ".." / "shared" / "data" / "conflibert"
BAD = REPO / "tests" / "resources" / "bad"
needs_shared_data = pytest.mark.skipif(
    not CONFLIBERT.is_dir(), reason=f"shared corpora not found at {CONFLIBERT} (expected beside the clone)"
)
CAMEO = load_config(REPO / "configs" / "cameo.yaml").label_schema
RE3D = load_config(REPO / "configs" / "re3d.yaml").label_schema

CAMEO_BIO_ERRORS = [
    "error: cameo_ner/train.txt:17911 [tag]: 'I-S' does not continue a span (it follows 'B-T'); "
    "fix the file or set data.repair_bio: true to read it as 'B-S'",
    "error: cameo_ner/train.txt:17938 [tag]: 'I-S' does not continue a span (it follows 'B-T'); "
    "fix the file or set data.repair_bio: true to read it as 'B-S'",
    "error: cameo_ner/train.txt:26328 [tag]: 'I-S' does not continue a span (it follows 'B-T'); "
    "fix the file or set data.repair_bio: true to read it as 'B-S'",
]


def messages(issues) -> list[str]:
    return [str(issue) for issue in issues]


def read_bad(name: str, repair_bio: bool = False):
    return read_conll(BAD / name, CAMEO, repair_bio=repair_bio, display=name)


def assert_spans_are_mentions(examples) -> None:
    for example in examples:
        for token in example.tokens:
            assert example.text[token.char_start : token.char_end] == token.text
        for span in example.actors:
            mention = example.actor_text(span)
            assert mention and mention == mention.strip()


@needs_shared_data
def test_real_cameo_ner_has_three_invalid_bio_tags():
    path = CONFLIBERT / "cameo_ner" / "train.txt"
    examples, issues = read_conll(path, CAMEO, repair_bio=False, display="cameo_ner/train.txt")
    assert messages(issues) == CAMEO_BIO_ERRORS
    assert len(examples) == 1150  # the three sentences with an error are left out

    examples, issues = read_conll(path, CAMEO, repair_bio=True, display="cameo_ner/train.txt")
    assert [issue.severity for issue in issues] == ["warning"] * 3
    assert len(examples) == 1153
    assert Counter(span.role for e in examples for span in e.actors) == {"S": 1097, "T": 963, "R": 102}
    first = examples[0]
    assert first.id == "cameo_ner/train.txt:1"
    assert first.event is None
    assert [(s.role, first.actor_text(s)) for s in first.actors] == [("S", "a car bomb"), ("T", "another ethnic Chechen")]
    assert_spans_are_mentions(examples)


@needs_shared_data
def test_real_re3d_tab_separated_crlf_file():
    examples, issues = read_conll(CONFLIBERT / "re3d" / "train.txt", RE3D, display="re3d/train.txt")
    assert issues == []
    assert len(examples) == 574  # 573 blank separators; the last sentence has no trailing blank line
    roles = Counter(span.role for e in examples for span in e.actors)
    assert roles["Organisation"] == 848 and roles["Person"] == 290
    assert_spans_are_mentions(examples)


def test_offsets_index_the_space_joined_text_and_escapes_are_undone():
    examples, issues = read_bad("ner_crlf_tab.txt")
    assert issues == []
    first = examples[0]
    assert first.text == "The UN condemned ( again ) Israel ."
    assert first.actors == [ActorSpan("S", 0, 6), ActorSpan("T", 27, 33)]
    assert [first.actor_text(s) for s in first.actors] == ["The UN", "Israel"]
    assert examples[1].actors == []  # labeled, no actors
    assert_spans_are_mentions(examples)


def test_invalid_bio_is_an_error_naming_the_line():
    examples, issues = read_bad("ner_bad_bio.txt")
    assert [e.text for e in examples] == ["Talks resumed ."]
    assert messages(issues) == [
        "error: ner_bad_bio.txt:4 [tag]: 'I-T' does not continue a span (it follows 'O'); "
        "fix the file or set data.repair_bio: true to read it as 'B-T'"
    ]


def test_invalid_bio_is_repaired_with_a_warning_when_allowed():
    examples, issues = read_bad("ner_bad_bio.txt", repair_bio=True)
    assert messages(issues) == [
        "warning: ner_bad_bio.txt:4 [tag]: 'I-T' does not continue a span (it follows 'O'); read as 'B-T'"
    ]
    assert [(s.role, examples[0].actor_text(s)) for s in examples[0].actors] == [("S", "Rebels"), ("T", "convoy")]


def test_unknown_role_is_an_error():
    examples, issues = read_bad("ner_unknown_role.txt")
    assert [e.text for e in examples] == ["Police arrested them ."]
    assert messages(issues) == [
        "error: ner_unknown_role.txt:1 [tag]: unknown actor role 'X' in tag 'B-X' (known roles: S, T, R)"
    ]


def test_malformed_tag_is_an_error():
    assert messages(read_bad("ner_malformed_tag.txt").issues) == [
        "error: ner_malformed_tag.txt:1 [tag]: malformed BIO tag 'S' (expected O, B-<role> or I-<role>)"
    ]


def test_truncated_line_is_an_error_and_drops_its_sentence():
    examples, issues = read_bad("ner_truncated.txt")
    assert [e.text for e in examples] == ["Police arrested them ."]
    assert messages(issues) == ["error: ner_truncated.txt:2: expected 2 columns (token TAG), found 1"]


def test_non_utf8_line_drops_its_whole_sentence():
    examples, issues = read_bad("ner_non_utf8.txt")
    assert [e.text for e in examples] == ["Police left ."]
    assert messages(issues) == [
        "error: ner_non_utf8.txt:3: not valid UTF-8: byte 0xe9 at byte 0 of the line (byte 22 of the file); "
        "the line is skipped"
    ]


def test_empty_file_is_an_error(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"\n\n")
    assert messages(read_conll(tmp_path / "empty.txt", CAMEO, display="empty.txt").issues) == [
        "error: empty.txt: empty file"
    ]
