"""Reading corpus files line by line without ever raising on bad bytes.

Every reader goes through :func:`read_text_lines`, so all formats share the same behaviour: lines are
decoded one at a time (a stray non-UTF-8 byte costs one line, reported with its line number and byte
offsets, not the whole file), ``\\r\\n`` and ``\\n`` are both accepted, a UTF-8 byte-order mark is
ignored, and a missing or empty file is an issue rather than an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from conflict_events.errors import Issue, Location
from conflict_events.schema import EventExample

UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class NumberedLine:
    """One decoded line (without its line terminator) and its 1-based line number."""

    number: int
    text: str


def error(display: str, line: int | None, field: str | None, message: str) -> Issue:
    return Issue(Location(display, line, field), message, "error")


def warning(display: str, line: int | None, field: str | None, message: str) -> Issue:
    return Issue(Location(display, line, field), message, "warning")


def read_text_lines(path: Path, display: str) -> tuple[list[NumberedLine], list[Issue]]:
    """All lines of ``path`` that decode as UTF-8, plus an issue for each one that does not.

    A file that is missing, unreadable or empty yields no lines and one error naming it. The empty
    string after a final newline is not a line (so a well-formed file never ends in a blank line).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], [error(display, None, None, f"file not found ({path})")]
    except OSError as problem:
        return [], [error(display, None, None, f"cannot read file: {problem.strerror or problem}")]
    if not raw.strip():
        return [], [error(display, None, None, "empty file")]
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM) :]
    lines: list[NumberedLine] = []
    issues: list[Issue] = []
    file_offset = 0
    chunks = raw.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()
    for number, chunk in enumerate(chunks, start=1):
        content = chunk[:-1] if chunk.endswith(b"\r") else chunk
        try:
            lines.append(NumberedLine(number, content.decode("utf-8")))
        except UnicodeDecodeError as problem:
            issues.append(_decode_issue(display, number, content, problem, file_offset))
        file_offset += len(chunk) + 1
    return lines, issues


def _decode_issue(
    display: str, number: int, content: bytes, problem: UnicodeDecodeError, file_offset: int
) -> Issue:
    bad_byte = content[problem.start]
    return error(
        display,
        number,
        None,
        f"not valid UTF-8: byte 0x{bad_byte:02x} at byte {problem.start} of the line "
        f"(byte {file_offset + problem.start} of the file); the line is skipped",
    )


class ReadResult(NamedTuple):
    """What every reader returns: the examples it could read and every issue it found."""

    examples: list[EventExample]
    issues: list[Issue]
