"""Document archives for the batch job: files, directories and globs of ``.jsonl``, ``.jsonl.gz``,
``.csv``, ``.parquet``, ``.txt`` (one document per file) and IndiaPoliceEvents-style ``.tsv``.

Readers yield :class:`~conflict_events.schema.Document` or, for anything that cannot be predicted on,
a :class:`BadRecord` naming the file, the line (or row) and the reason; they never stop at a bad record.
Order is deterministic: inputs in the order given, a directory's or a glob's files sorted by path, and
records in file order.

Document ids: the ``--id-field`` value when the record has one, otherwise ``<file stem>-<line>`` (``.txt``:
the file stem). Line numbers are 1-based physical lines (CSV/TSV: the line a row starts on; Parquet: the
1-based row number).
"""

from __future__ import annotations

import csv
import glob
import gzip
import json
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from conflict_events.errors import DataError, Issue, Location
from conflict_events.schema import Document, SourceRef

SUFFIXES = (".jsonl.gz", ".jsonl", ".csv", ".parquet", ".txt", ".tsv")


@dataclass(frozen=True)
class BadRecord:
    """A record that was not predicted on, and why. Written to ``errors.jsonl``."""

    source: str
    line: int | None
    reason: str
    doc_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "id": self.doc_id, "reason": self.reason}


SourceItem = Document | BadRecord


@dataclass(frozen=True)
class ReaderSettings:
    text_field: str = "text"
    id_field: str = "id"
    max_document_chars: int = 2_000_000


def suffix_of(path: Path) -> str | None:
    name = path.name.lower()
    return next((suffix for suffix in SUFFIXES if name.endswith(suffix)), None)


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files in a deterministic order; directories are searched recursively for supported files."""
    files: list[Path] = []
    issues: list[Issue] = []
    for raw in inputs:
        text = str(raw)
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and suffix_of(p))
            if not found:
                issues.append(Issue(Location(text), f"no {', '.join(SUFFIXES)} files in this directory"))
            files += found
        elif path.is_file():
            if suffix_of(path) is None:
                issues.append(Issue(Location(text), f"unsupported file type (expected one of {', '.join(SUFFIXES)})"))
            files.append(path)
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file() and suffix_of(Path(p)))
            if not found:
                issues.append(Issue(Location(text), "the pattern matches no supported file"))
            files += found
        else:
            issues.append(Issue(Location(text), "no such file or directory"))
    if issues:
        raise DataError(issues)
    unique: list[Path] = []
    seen: set[Path] = set()
    for path in files:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique


def read_documents(inputs: Sequence[str | Path], settings: ReaderSettings = ReaderSettings()) -> Iterator[SourceItem]:
    for path in expand_inputs(inputs):
        yield from read_file(path, settings)


def read_file(path: Path, settings: ReaderSettings) -> Iterator[SourceItem]:
    suffix = suffix_of(path)
    readers = {
        ".jsonl": _read_jsonl,
        ".jsonl.gz": _read_jsonl,
        ".csv": _read_csv,
        ".tsv": _read_tsv,
        ".parquet": _read_parquet,
        ".txt": _read_txt,
    }
    if suffix is None:
        yield BadRecord(str(path), None, "unsupported file type")
        return
    try:
        yield from readers[suffix](path, settings)
    except OSError as error:
        yield BadRecord(str(path), None, f"cannot read file: {error}")


def checked(
    text: Any, doc_id: str, source: str, line: int | None, settings: ReaderSettings, field: str | None = None
) -> SourceItem:
    """The one place a record's text is judged fit for prediction."""
    field = field or settings.text_field
    if text is None:
        return BadRecord(source, line, f"missing text field '{field}'", doc_id)
    if not isinstance(text, str):
        return BadRecord(source, line, f"text field '{field}' is not a string (got {type(text).__name__})", doc_id)
    try:
        # Readers decode with surrogateescape so one bad row does not stop a file; surrogates mark its bytes.
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return BadRecord(source, line, f"undecodable bytes (not valid UTF-8) at character {error.start}", doc_id)
    if not text.strip():
        return BadRecord(source, line, "empty text", doc_id)
    if len(text) > settings.max_document_chars:
        return BadRecord(
            source,
            line,
            f"text has {len(text)} characters, over inference.max_document_chars={settings.max_document_chars}",
            doc_id,
        )
    return Document(doc_id, text, SourceRef(source, line if line is not None else 0))


def _doc_id(value: Any, path: Path, line: int) -> str:
    if value is None or (isinstance(value, str) and not value.strip()) or isinstance(value, (dict, list)):
        return f"{_stem(path)}-{line}"
    return str(value)


def _stem(path: Path) -> str:
    suffix = suffix_of(path) or path.suffix
    return path.name[: -len(suffix)] if suffix else path.name


def _read_jsonl(path: Path, settings: ReaderSettings) -> Iterator[SourceItem]:
    source = str(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    line = 0
    try:
        with opener(path, "rb") as handle:
            for line, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    decoded = raw.rstrip(b"\r\n").decode("utf-8")
                except UnicodeDecodeError as error:
                    yield BadRecord(source, line, f"undecodable bytes (not valid UTF-8) at byte offset {error.start}")
                    continue
                try:
                    record = json.loads(decoded)
                except json.JSONDecodeError as error:
                    yield BadRecord(source, line, f"malformed JSON: {error.msg} (column {error.colno})")
                    continue
                if not isinstance(record, dict):
                    yield BadRecord(source, line, f"not a JSON object (got {type(record).__name__})")
                    continue
                doc_id = _doc_id(record.get(settings.id_field), path, line)
                yield checked(record.get(settings.text_field), doc_id, source, line, settings)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        yield BadRecord(source, line + 1, f"corrupt gzip stream, rest of file skipped: {error}")


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, list[str] | BadRecord]]:
    """(line the row starts on, fields) for each row; bytes that are not UTF-8 survive as surrogates so
    one bad row does not stop the file."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        start = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield start, BadRecord(str(path), start, f"malformed row: {error}")
                start = reader.line_num + 1
                continue
            yield start, row
            start = reader.line_num + 1


def _read_csv(path: Path, settings: ReaderSettings) -> Iterator[SourceItem]:
    source = str(path)
    rows = _csv_rows(path, ",")
    header: list[str] | None = None
    for line, row in rows:
        if isinstance(row, BadRecord):
            yield row
            continue
        if header is None:
            header = row
            if settings.text_field not in header:
                yield BadRecord(source, line, f"no column '{settings.text_field}' in the header ({', '.join(header)})")
                return
            text_column = header.index(settings.text_field)
            id_column = header.index(settings.id_field) if settings.id_field in header else None
            continue
        if not any(field.strip() for field in row):
            continue
        doc_id = _doc_id(row[id_column] if id_column is not None and id_column < len(row) else None, path, line)
        text = row[text_column] if text_column < len(row) else None
        yield checked(text, doc_id, source, line, settings)


def _read_tsv(path: Path, settings: ReaderSettings) -> Iterator[SourceItem]:
    """IndiaPoliceEvents layout: ``article<TAB>label<TAB>...``, no header, CSV-style quoting."""
    source = str(path)
    for line, row in _csv_rows(path, "\t"):
        if isinstance(row, BadRecord):
            yield row
            continue
        if not row or not any(field.strip() for field in row):
            continue
        yield checked(row[0], f"{_stem(path)}-{line}", source, line, settings, field="article (column 1)")


def _read_parquet(path: Path, settings: ReaderSettings) -> Iterator[SourceItem]:
    import pyarrow.parquet as pq

    source = str(path)
    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    if settings.text_field not in names:
        yield BadRecord(source, None, f"no column '{settings.text_field}' ({', '.join(names)})")
        return
    columns = [settings.text_field] + ([settings.id_field] if settings.id_field in names else [])
    row = 0
    for batch in parquet.iter_batches(columns=columns, batch_size=1024):
        texts = batch.column(settings.text_field).to_pylist()
        ids = batch.column(settings.id_field).to_pylist() if settings.id_field in names else [None] * len(texts)
        for text, raw_id in zip(texts, ids):
            row += 1
            if isinstance(text, bytes):
                try:
                    text = text.decode("utf-8")
                except UnicodeDecodeError as error:
                    yield BadRecord(source, row, f"undecodable bytes (not valid UTF-8) at byte offset {error.start}")
                    continue
            yield checked(text, _doc_id(raw_id, path, row), source, row, settings)


def _read_txt(path: Path, settings: ReaderSettings) -> Iterator[SourceItem]:
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        yield BadRecord(source, None, f"undecodable bytes (not valid UTF-8) at byte offset {error.start}", _stem(path))
        return
    yield checked(text, _stem(path), source, None, settings, field="file content")
