"""Document archives for the batch job: files, directories and globs of ``.jsonl``, ``.jsonl.gz``,
``.csv``, ``.parquet``, ``.txt`` (one document per file) and IndiaPoliceEvents-style ``.tsv``.

Readers yield :class:`~conflict_events.schema.Document` or, for anything that cannot be predicted on,
a :class:`BadRecord` naming the file, the line (or row) and the reason; they never stop at a bad record,
and nothing a file holds is dropped without one. A file that cannot be read at all (or past some point:
a corrupt Parquet footer, a truncated gzip stream) is one file-level ``BadRecord`` naming the file and the
cause, never a traceback. Order is deterministic: inputs in the order given, a directory's or a glob's
files sorted by path, and records in file order. Files of a directory or glob that are not read (an
unsupported suffix, a second mention of the same file) are reported by :func:`scan_inputs`.
:func:`read_file` also reads a file's bytes fetched elsewhere (:class:`FileBytes`: the Spark engine's
executors), with the same validation, ids, line numbers and reasons.

Document ids: the ``--id-field`` value (``ReaderSettings.id_field``). When it is given, a file (CSV,
Parquet) or a record (JSONL) without that field is an error naming the fields present; when it is not,
the ``id`` field is used where a record has one. A record whose id value is empty or null gets
``<file stem>-<line>``; ``.txt`` (id = the file stem) and IndiaPoliceEvents ``.tsv`` (id =
``<stem>-<line>``) have no id field. Line numbers are 1-based physical lines (CSV/TSV: the line a row starts
on; Parquet: the 1-based row number).

CSV is read strictly: quoting errors, and rows whose number of fields is not the header's, are bad
records. A quote that is never closed makes everything after it, to the end of the file, part of one
field; that cannot be told apart from text, so those lines are one bad record at the line the quote opens
(naming the lines it covers) rather than rows guessed out of another row's text.
"""

from __future__ import annotations

import csv
import glob
import gzip
import hashlib
import io
import json
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from conflict_events.errors import DataError, Issue, Location
from conflict_events.schema import Document, SourceRef

SUFFIXES = (".jsonl.gz", ".jsonl", ".csv", ".parquet", ".txt", ".tsv")
# The id field read when --id-field is not given, where a record has it.
DEFAULT_ID_FIELD = "id"
# What reading a damaged file can raise (pyarrow's own errors are added for Parquet): each ends the file
# with one file-level bad record instead of the job.
_FILE_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, EOFError, zlib.error, csv.Error)


def _writable(text: str | None) -> str | None:
    # Bytes a reader could not decode survive as lone surrogates (surrogateescape), which no UTF-8
    # writer accepts; an error record names them as \udcXX escapes instead.
    return None if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class BadRecord:
    """A record that was not predicted on, and why. Written to ``errors.jsonl``."""

    source: str
    line: int | None
    reason: str
    doc_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": _writable(self.source),
            "line": self.line,
            "id": _writable(self.doc_id),
            "reason": _writable(self.reason),
        }


SourceItem = Document | BadRecord


@dataclass(frozen=True)
class FileBytes:
    """A file's content read elsewhere, under the name its documents and bad records give it: the Spark
    engine's executors get the bytes from any Hadoop file system and hand them to :func:`read_file`, so
    ids, line numbers and reasons are the local engine's. A reader takes it wherever it takes a ``Path``
    (``name``, ``open``, ``read_bytes``, ``str``)."""

    source: str  # what `source` of the bad records says: the file's URI
    data: bytes

    @property
    def name(self) -> str:
        return self.source.rstrip("/").rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return self.source

    def open(self, mode: str = "rb", encoding: str | None = None, errors: str | None = None, newline: str | None = None):
        if mode == "rb":
            return io.BytesIO(self.data)
        if mode == "r":
            return io.TextIOWrapper(io.BytesIO(self.data), encoding=encoding, errors=errors, newline=newline)
        raise ValueError(f"FileBytes opens 'rb' or 'r', not {mode!r}")

    def read_bytes(self) -> bytes:
        return self.data


ReadableFile = Path | FileBytes


@dataclass(frozen=True)
class ReaderSettings:
    text_field: str = "text"
    # None: the `id` field where a record has one; a name: that field, which every CSV/Parquet file
    # (every JSONL record) must have.
    id_field: str | None = None
    max_document_chars: int = 2_000_000

    @property
    def id_key(self) -> str:
        return self.id_field if self.id_field is not None else DEFAULT_ID_FIELD


@dataclass(frozen=True)
class SkippedFile:
    """A file met in an input directory or glob and not read, and why (listed in the job's manifest)."""

    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": _writable(self.path), "reason": self.reason}


@dataclass(frozen=True)
class InputScan:
    """The files the inputs name, in reading order, and those met but not read."""

    files: tuple[Path, ...]
    skipped: tuple[SkippedFile, ...]


@dataclass(frozen=True)
class InputFile:
    """An input file as a job records it: resuming compares these to know the input is the same.

    The whole file is hashed: reading the inputs (which every run and resume does anyway) costs more
    than hashing them, and a size plus a sample of the bytes would miss an edit in the middle of a file
    that keeps its length, i.e. exactly the change that would mix two versions of an archive."""

    path: str  # as reached through the inputs given (the `source` of its error records)
    resolved: str  # absolute, symlinks resolved: what identifies the file across runs
    bytes: int | None  # None (with sha256): the file could not be read; its reader reports why
    sha256: str | None

    @classmethod
    def of(cls, path: Path) -> "InputFile":
        try:
            return cls(str(path), str(path.resolve()), path.stat().st_size, file_sha256(path))
        except OSError:
            return cls(str(path), str(path.resolve()), None, None)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "resolved": self.resolved, "bytes": self.bytes, "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "InputFile":
        return cls(data["path"], data["resolved"], data["bytes"], data["sha256"])


def file_sha256(path: str | Path) -> str:
    """``sha256:<hex>`` of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def suffix_of(path: ReadableFile) -> str | None:
    name = path.name.lower()
    return next((suffix for suffix in SUFFIXES if name.endswith(suffix)), None)


def scan_inputs(inputs: Sequence[str | Path], exclude: str | Path | None = None) -> InputScan:
    """Files in a deterministic order; directories are searched recursively for supported files.

    A file with an unsupported suffix found in a directory or by a glob is skipped (a file named
    directly must be supported), as is a second mention of a file and everything under ``exclude`` (the
    job's own output directory, which would otherwise be read back as input by the next run)."""
    excluded = Path(exclude).resolve() if exclude is not None else None
    found: list[Path] = []
    skipped: list[SkippedFile] = []
    issues: list[Issue] = []

    def searched(candidates: list[Path]) -> list[Path]:
        supported = []
        for candidate in sorted(candidates):
            if excluded is not None and candidate.resolve().is_relative_to(excluded):
                continue
            if suffix_of(candidate) is None:
                skipped.append(SkippedFile(str(candidate), f"unsupported file type (not {', '.join(SUFFIXES)})"))
            else:
                supported.append(candidate)
        return supported

    for raw in inputs:
        text = str(raw)
        path = Path(text)
        if path.is_dir():
            if excluded is not None and excluded.is_relative_to(path.resolve()):
                skipped.append(SkippedFile(str(excluded), "the job's own output directory (not read)"))
            files = searched([p for p in path.rglob("*") if p.is_file()])
            if not files:
                issues.append(Issue(Location(text), f"no {', '.join(SUFFIXES)} files in this directory"))
            found += files
        elif path.is_file():
            if suffix_of(path) is None:
                issues.append(Issue(Location(text), f"unsupported file type (expected one of {', '.join(SUFFIXES)})"))
            found.append(path)
        elif glob.has_magic(text):
            files = searched([Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()])
            if not files:
                issues.append(Issue(Location(text), "the pattern matches no supported file"))
            found += files
        else:
            issues.append(Issue(Location(text), "no such file or directory"))
    if issues:
        raise DataError(issues)
    unique: list[Path] = []
    first: dict[Path, Path] = {}
    for path in found:
        resolved = path.resolve()
        if resolved in first:
            skipped.append(SkippedFile(str(path), f"the same file as {first[resolved]}, which is read once"))
            continue
        first[resolved] = path
        unique.append(path)
    return InputScan(tuple(unique), tuple(skipped))


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """The files :func:`scan_inputs` reads, in order."""
    return list(scan_inputs(inputs).files)


def read_documents(inputs: Sequence[str | Path], settings: ReaderSettings = ReaderSettings()) -> Iterator[SourceItem]:
    for path in expand_inputs(inputs):
        yield from read_file(path, settings)


def read_file(path: ReadableFile, settings: ReaderSettings) -> Iterator[SourceItem]:
    """The file's documents and bad records; whatever stops the file early is its last bad record.
    ``path`` is a local file or a :class:`FileBytes` (its content read elsewhere)."""
    suffix = suffix_of(path)
    if suffix is None:
        yield BadRecord(str(path), None, "unsupported file type")
        return
    last_line: int | None = None
    try:
        for item in _READERS[suffix](path, settings):
            last_line = item.line if isinstance(item, BadRecord) else item.source.line
            yield item
    except _file_errors(suffix) as error:
        where = "the file" if last_line is None else f"the file past line {last_line} (the rest was not read)"
        yield BadRecord(str(path), None, f"cannot read {where}: {type(error).__name__}: {error}")


def _file_errors(suffix: str) -> tuple[type[BaseException], ...]:
    if suffix != ".parquet":
        return _FILE_ERRORS
    import pyarrow as pa

    # pyarrow raises its own classes for a damaged file (ArrowInvalid for a missing footer, others for
    # unsupported encodings or corrupt pages); they share a base that is not one of Python's.
    return _FILE_ERRORS + (pa.ArrowException,)


def checked(
    text: Any, doc_id: str, source: str, line: int | None, settings: ReaderSettings, field: str | None = None
) -> SourceItem:
    """The one place a record's text (and id) is judged fit for prediction."""
    field = field or settings.text_field
    if not _is_utf8(doc_id):
        return BadRecord(source, line, "the id has undecodable bytes (not valid UTF-8)", doc_id)
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


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _doc_id(value: Any, path: ReadableFile, line: int) -> str:
    if value is None or (isinstance(value, str) and not value.strip()) or isinstance(value, (dict, list)):
        return f"{_stem(path)}-{line}"
    return str(value)


def _stem(path: ReadableFile) -> str:
    suffix = suffix_of(path) or Path(path.name).suffix
    return path.name[: -len(suffix)] if suffix else path.name


def _missing_id_field(settings: ReaderSettings, fields: Sequence[str]) -> str | None:
    """The reason a file (a JSONL record) without the --id-field it was asked for is refused."""
    if settings.id_field is None or settings.id_field in fields:
        return None
    return f"no id field '{settings.id_field}' (--id-field); fields present: {', '.join(fields) or 'none'}"


def _read_jsonl(path: ReadableFile, settings: ReaderSettings) -> Iterator[SourceItem]:
    source = str(path)
    line = 0
    try:
        with _open_binary(path) as handle:
            for line, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    # utf-8-sig on the first line: a byte-order mark (some Windows tools write one) is not data.
                    decoded = raw.rstrip(b"\r\n").decode("utf-8-sig" if line == 1 else "utf-8")
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
                missing = _missing_id_field(settings, list(record))
                if missing:
                    yield BadRecord(source, line, missing)
                    continue
                doc_id = _doc_id(record.get(settings.id_key), path, line)
                yield checked(record.get(settings.text_field), doc_id, source, line, settings)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        yield BadRecord(source, line + 1, f"corrupt gzip stream, rest of file skipped: {error}")


def _open_binary(path: ReadableFile):
    """The file's bytes as a stream, gunzipped for ``.gz``; a local file is opened by its name, as always."""
    if not path.name.lower().endswith(".gz"):
        return path.open("rb")
    return gzip.open(path if isinstance(path, Path) else path.open("rb"), "rb")


class _Lines:
    """A text file's physical lines for ``csv.reader``, noting whether the reader asked for more than
    there are (which it does only while a quoted field is still open)."""

    def __init__(self, handle):
        self._lines = iter(handle)
        self.ran_out = False

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        try:
            return next(self._lines)
        except StopIteration:
            self.ran_out = True
            raise


def _csv_rows(path: ReadableFile, delimiter: str) -> Iterator[tuple[int, int, list[str] | BadRecord]]:
    """(first line, last line, fields) of each row; bytes that are not UTF-8 survive as surrogates so
    one bad row does not stop the file. A bad row spanning several lines names them: any of them may hold
    rows that a broken quote swallowed."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    source = str(path)
    # utf-8-sig: Excel's CSVs start with a byte-order mark, which would otherwise be part of the first column's name.
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        lines = _Lines(handle)
        # strict: a quote followed by anything but a delimiter or a line end is an error, not text.
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        start = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                end = reader.line_num
                if lines.ran_out:
                    reason = (
                        f"unterminated quoted field: the quote opened in the row starting on line {start} is never "
                        f"closed, so {_lines(start, end)}, to the end of the file, could not be read as rows"
                    )
                    yield start, end, BadRecord(source, start, reason)
                    return
                yield start, end, BadRecord(source, start, f"malformed row ({_lines(start, end)}): {error}")
                start = end + 1
                continue
            yield start, reader.line_num, row
            start = reader.line_num + 1


def _lines(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


def _read_csv(path: ReadableFile, settings: ReaderSettings) -> Iterator[SourceItem]:
    source = str(path)
    header: list[str] | None = None
    for line, last, row in _csv_rows(path, ","):
        if header is None:
            if isinstance(row, BadRecord):
                # Without a header no row can be read by column name.
                yield BadRecord(source, line, f"cannot read the header row, so the file was not read: {row.reason}")
                return
            if not row:
                continue
            header = row
            if settings.text_field not in header:
                yield BadRecord(source, line, f"no column '{settings.text_field}' in the header ({', '.join(header)})")
                return
            missing = _missing_id_field(settings, header)
            if missing:
                yield BadRecord(source, line, f"{missing} (header row)")
                return
            text_column = header.index(settings.text_field)
            id_column = header.index(settings.id_key) if settings.id_key in header else None
            continue
        if isinstance(row, BadRecord):
            yield row
            continue
        if not any(field.strip() for field in row):
            continue
        raw_id = row[id_column] if id_column is not None and id_column < len(row) else None
        doc_id = _doc_id(raw_id, path, line)
        if len(row) != len(header):
            # An unquoted delimiter or a lost quote shifts the fields: which one is the text is a guess.
            reason = f"row has {len(row)} fields, the header has {len(header)} ({_lines(line, last)})"
            yield BadRecord(source, line, reason, doc_id)
            continue
        yield checked(row[text_column], doc_id, source, line, settings)


def _read_tsv(path: ReadableFile, settings: ReaderSettings) -> Iterator[SourceItem]:
    """IndiaPoliceEvents layout: ``article<TAB>label<TAB>...``, no header, CSV-style quoting."""
    source = str(path)
    for line, _, row in _csv_rows(path, "\t"):
        if isinstance(row, BadRecord):
            yield row
            continue
        if not row or not any(field.strip() for field in row):
            continue
        yield checked(row[0], f"{_stem(path)}-{line}", source, line, settings, field="article (column 1)")


def _parquet_values(array) -> list[Any]:
    """A column's values with string columns as raw bytes, so that one row's invalid UTF-8 is that row's
    error (Arrow decodes a whole batch at once and would fail it all)."""
    import pyarrow as pa

    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_string(array.type):
        array = array.cast(pa.binary())
    elif pa.types.is_large_string(array.type):
        array = array.cast(pa.large_binary())
    return array.to_pylist()


def _read_parquet(path: ReadableFile, settings: ReaderSettings) -> Iterator[SourceItem]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = str(path)
    parquet = pq.ParquetFile(path if isinstance(path, Path) else pa.BufferReader(path.data))
    names = parquet.schema_arrow.names
    if settings.text_field not in names:
        yield BadRecord(source, None, f"no column '{settings.text_field}' ({', '.join(names)})")
        return
    missing = _missing_id_field(settings, names)
    if missing:
        yield BadRecord(source, None, missing)
        return
    has_id = settings.id_key in names
    columns = [settings.text_field] + ([settings.id_key] if has_id else [])
    row = 0
    for batch in parquet.iter_batches(columns=columns, batch_size=1024):
        texts = _parquet_values(batch.column(settings.text_field))
        ids = _parquet_values(batch.column(settings.id_key)) if has_id else [None] * len(texts)
        for text, raw_id in zip(texts, ids):
            row += 1
            if isinstance(raw_id, bytes):
                raw_id = raw_id.decode("utf-8", errors="surrogateescape")
            doc_id = _doc_id(raw_id, path, row)
            if isinstance(text, bytes):
                try:
                    text = text.decode("utf-8")
                except UnicodeDecodeError as error:
                    yield BadRecord(source, row, f"undecodable bytes (not valid UTF-8) at byte offset {error.start}", doc_id)
                    continue
            yield checked(text, doc_id, source, row, settings)


def _read_txt(path: ReadableFile, settings: ReaderSettings) -> Iterator[SourceItem]:
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        yield BadRecord(source, None, f"undecodable bytes (not valid UTF-8) at byte offset {error.start}", _stem(path))
        return
    yield checked(text, _stem(path), source, None, settings, field="file content")


_READERS = {
    ".jsonl": _read_jsonl,
    ".jsonl.gz": _read_jsonl,
    ".csv": _read_csv,
    ".tsv": _read_tsv,
    ".parquet": _read_parquet,
    ".txt": _read_txt,
}


# --- counting, for a progress bar ---------------------------------------------------------------------
# Files scanned for line breaks to count their records, at most this many bytes in all: beyond it counting
# would be a second read of a large archive, not a cheap look.
COUNT_MAX_BYTES = 1 << 30
_COUNT_CHUNK = 1 << 20


def count_records(paths: Sequence[Path], max_bytes: int = COUNT_MAX_BYTES) -> int | None:
    """About how many records (documents and bad records) :func:`read_file` meets in ``paths``, where that is
    cheap to know without parsing them; None where it is not. ``.jsonl`` and ``.tsv``: their lines (a byte
    scan; a blank line, or a TSV field holding a line break, makes the count one too high); ``.parquet``: the
    row count in its footer; ``.txt``: one. ``.jsonl.gz`` (it would have to be decompressed) and ``.csv`` (its
    quoted fields often hold line breaks) are not counted, and neither is anything once the line-counted
    files exceed ``max_bytes``."""
    total = 0
    scanned = 0
    for path in paths:
        suffix = suffix_of(path)
        try:
            if suffix == ".txt":
                total += 1
            elif suffix == ".parquet":
                import pyarrow.parquet as pq

                total += pq.ParquetFile(path).metadata.num_rows
            elif suffix in (".jsonl", ".tsv"):
                scanned += path.stat().st_size
                if scanned > max_bytes:
                    return None
                total += _count_lines(path)
            else:
                return None
        except _file_errors(suffix or ""):  # unreadable or damaged: the job's reader reports it; the bar has no total
            return None
    return total


def _count_lines(path: Path) -> int:
    lines = 0
    last = b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(_COUNT_CHUNK):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")  # a last line without a line break
