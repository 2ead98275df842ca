"""Properties over arbitrary text (hypothesis): offsets stay exact whatever the Unicode, and the readers
account for every input record, as a document or as an error, never neither."""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conflict_events.config import InferenceConfig
from conflict_events.inference.predictor import Predictor
from conflict_events.inference.testing import save_random_joint_model
from conflict_events.schema import Document
from conflict_events.sentences import SentenceSplitter
from conflict_events.sources import BadRecord, read_documents
from conftest import assert_offsets_hold

# Few examples, no deadline (the first call of a model warms up), no example database in the work tree.
FEW = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# What news text throws at offsets: combining marks, right-to-left scripts and controls, zero-width
# characters, emoji (flags and ZWJ sequences), NUL, CR/CRLF/LS line ends, a BOM, characters that case-fold
# into two (İ, ß, ﬁ), abbreviations and sentence ends pysbd reasons about.
AWKWARD = st.sampled_from(
    [
        "e\u0301", "\u0301", "\u05e6\u05d1\u05d0 ", "\u0627\u0644\u062c\u064a\u0634 ", "\u200f", "\u202e", "\u200b",
        "\u200d", "\ufeff", "\U0001f600", "\U0001f1fa\U0001f1f8", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
        "\x00", "\r\n", "\r", "\n\n", "\t", "\u2028", "\u0130", "\u00df", "\ufb01", "\u0915\u093f", "\u4e2d\u56fd\u3002",
        ". ", "! ", "? ", "...", " ", "Mr. ", "U.S. ", '"', "(", ")",
    ]
)
WORDS = st.sampled_from(["Rebels", "attacked", "the", "town", "Troops", "fired", "Caf\u00e9", "Derna", "Houthi"])
TEXTS = st.lists(st.one_of(AWKWARD, WORDS, st.text(max_size=6)), max_size=40).map("".join)


@SOME
@given(TEXTS)
def test_sentences_are_stripped_disjoint_slices_that_leave_out_only_whitespace(text):
    previous_end = 0
    covered = [False] * len(text)
    for span in SentenceSplitter().split(text):
        sentence = text[span.char_start : span.char_end]
        assert sentence and sentence == sentence.strip()
        assert span.char_start >= previous_end
        previous_end = span.char_end
        covered[span.char_start : span.char_end] = [True] * len(sentence)
    assert all(seen or char.isspace() for char, seen in zip(text, covered))


@pytest.fixture(scope="module")
def windowing_predictor(tiny_encoder_dir, tmp_path_factory) -> Predictor:
    # max_length 16: most sentences go through the windows, whose offsets are the fragile ones.
    directory = save_random_joint_model(tiny_encoder_dir, tmp_path_factory.mktemp("joint") / "m16", max_length=16)
    return Predictor.from_uri(directory, InferenceConfig(batch_size=8, window_overlap=4, backend="torch"))


@FEW
@given(text=TEXTS)
def test_every_sentence_and_actor_span_of_a_record_is_its_document_slice(windowing_predictor, text):
    document = Document("doc", text)
    assert_offsets_hold(document, windowing_predictor.predict_documents([document]))


# --- readers: every record is a document or an error -----------------------------------------------------
# A JSONL line of each kind, and what reading it gives.
JSONL_KINDS = ("document", "number", "no_text", "malformed", "not_utf8", "array", "null_id")


def jsonl_line(kind: str, number: int, text: str) -> bytes:
    identifier = f"r{number}"
    return {
        "document": json.dumps({"id": identifier, "text": text}, ensure_ascii=False).encode(),
        "number": json.dumps({"id": identifier, "text": 42}).encode(),
        "no_text": json.dumps({"id": identifier, "body": text}, ensure_ascii=False).encode(),
        "malformed": b'{"id": "' + identifier.encode() + b'", "text": "unterminated',
        "not_utf8": b'{"id": "' + identifier.encode() + b'", "text": "caf\xe9"}',
        "array": b"[1, 2]",
        "null_id": json.dumps({"id": None, "text": text}, ensure_ascii=False).encode(),
    }[kind]


@SOME
@given(
    st.lists(st.tuples(st.sampled_from(JSONL_KINDS), TEXTS), min_size=1, max_size=12),
    st.sampled_from([b"\n", b"\r\n"]),
)
def test_every_jsonl_line_is_one_document_or_one_error(lines, newline):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "archive.jsonl"
        path.write_bytes(b"".join(jsonl_line(kind, number, text) + newline for number, (kind, text) in enumerate(lines)))
        items = list(read_documents([path]))

    assert [line_of(item) for item in items] == list(range(1, len(lines) + 1))
    for number, ((kind, text), item) in enumerate(zip(lines, items)):
        readable = kind in ("document", "null_id") and text.strip()
        assert isinstance(item, Document) == bool(readable), (kind, item)
        if readable:
            assert item.text == text
            assert item.id == (f"r{number}" if kind == "document" else f"archive-{number + 1}")


def line_of(item: Document | BadRecord) -> int | None:
    return item.line if isinstance(item, BadRecord) else item.source.line


# Stands for a byte that is not UTF-8 (0x80, a lone continuation byte) until the file is written.
NOT_UTF8 = "\x80"
PLAIN = st.text(st.characters(codec="utf-8", exclude_characters='"\r\n'), max_size=20)


@SOME
@given(
    st.lists(st.tuples(st.sampled_from(["document", "extra_field", "not_utf8"]), TEXTS), min_size=1, max_size=10),
    st.one_of(st.none(), st.integers(min_value=0, max_value=9)),
    st.lists(PLAIN, max_size=4),
    st.sampled_from(["\r\n", "\n"]),
)
def test_every_csv_row_is_a_document_an_error_or_inside_a_named_broken_range(rows, broken_at, tail, newline):
    """Rows are written by csv.writer (any text, quoted as needed); some have a field too many or bytes that
    are not UTF-8; optionally a row opens a quote it never closes, followed by rows without quotes, which
    that quote swallows. Each row must come back as its document (exact text), as an error with its id, or
    inside the line range of an error that names the range."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=newline, quoting=csv.QUOTE_MINIMAL if newline == "\r\n" else csv.QUOTE_ALL)
    writer.writerow(["id", "text"])
    written: list[tuple[str, int, str, str]] = []  # (id, first line, kind, text)
    for number, (kind, text) in enumerate(rows):
        if broken_at == number:
            break
        text = text.replace(NOT_UTF8, "")
        first_line = len(io.StringIO(buffer.getvalue(), newline="").readlines()) + 1
        fields = [f"r{number}", NOT_UTF8 + text if kind == "not_utf8" else text] + (["extra"] if kind == "extra_field" else [])
        writer.writerow(fields)
        written.append((f"r{number}", first_line, kind, text))
    content = buffer.getvalue()
    if broken_at is not None:
        first_line = len(io.StringIO(content, newline="").readlines()) + 1
        content += f'b0,"never closed{newline}' + "".join(f"t{n},{text}{newline}" for n, text in enumerate(tail))
        written += [("b0", first_line, "broken", "")] + [(f"t{n}", first_line + 1 + n, "broken", "") for n in range(len(tail))]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "archive.csv"
        path.write_bytes(content.encode("utf-8").replace(NOT_UTF8.encode("utf-8"), b"\x80"))
        items = list(read_documents([path]))

    documents = {item.id: item for item in items if isinstance(item, Document)}
    errors = {item.doc_id: item for item in items if isinstance(item, BadRecord) and item.doc_id}
    ranges = [named_range(item) for item in items if isinstance(item, BadRecord) and named_range(item)]
    for identifier, first_line, kind, text in written:
        if kind == "document" and text.strip():
            assert documents[identifier].text == text
        elif kind in ("document", "extra_field", "not_utf8"):
            assert identifier in errors, (identifier, items)
        else:
            assert any(low <= first_line <= high for low, high in ranges), (identifier, first_line, items)
    for item in items:
        assert isinstance(item, Document) or item.doc_id or named_range(item), f"an error that names no row: {item}"


def named_range(error: BadRecord) -> tuple[int, int] | None:
    """The lines an error says it covers: "lines 4-9" (else "line 4")."""
    found = re.search(r"lines (\d+)-(\d+)", error.reason) or re.search(r"line (\d+)()", error.reason)
    return (int(found[1]), int(found[2] or found[1])) if found else None
