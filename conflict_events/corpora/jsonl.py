"""The canonical JSONL format: one example per line, the form :meth:`EventExample.to_json` writes.

``{"id": str, "text": str, "event": name | [names], "actors": [{"role", "char_start", "char_end",
"text"?}], "tokens": [{"text", "char_start", "char_end"}]}``

- ``event``: a class name (multiclass) or a list of names (multilabel). Missing or ``null``: the
  example has no event label.
- ``actors``: missing or ``null``: the actor layer is unlabeled; ``[]``: labeled, no actors. Offsets
  are character offsets into ``text`` (end exclusive); ``text``, when present, must equal
  ``text[char_start:char_end]``. Spans may not overlap (BIO cannot encode that).
- ``tokens``: optional; each token's ``text`` must equal ``text[char_start:char_end]``.
- ``fillers``: optional, document-level corpora only (MUC-4 written as JSONL): ``[{"role", "mentions":
  [str, ...]}]``, one per entity, its coreferent mention strings.

Other keys are reported as warnings (a typo such as ``"actor"`` would otherwise drop a layer silently).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from conflict_events.corpora.textfile import NumberedLine, ReadResult, error, read_text_lines, warning
from conflict_events.corpora.tsv import unknown_label_message
from conflict_events.errors import Issue
from conflict_events.labels import LabelSchema
from conflict_events.schema import ActorSpan, EventExample, Filler, SourceRef, Token

KNOWN_KEYS = ("id", "text", "event", "actors", "tokens", "fillers")


class RecordError(Exception):
    """Raised by :func:`example_from_record` with the field at fault; the reader turns it into an :class:`Issue`."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def read_jsonl(path: Path, labels: LabelSchema, display: str | None = None) -> ReadResult:
    display = display or str(path)
    lines, issues = read_text_lines(path, display)
    examples: list[EventExample] = []
    first_line_of_id: dict[str, int] = {}
    for line in lines:
        if not line.text.strip():
            issues.append(warning(display, line.number, None, "blank line (skipped)"))
            continue
        example, line_issues = _parse_line(line, labels, display)
        issues.extend(line_issues)
        if example is None:
            continue
        if example.id in first_line_of_id:
            message = f"duplicate id '{example.id}' (first used on line {first_line_of_id[example.id]})"
            issues.append(error(display, line.number, "id", message))
            continue
        first_line_of_id[example.id] = line.number
        examples.append(example)
    return ReadResult(examples, issues)


def write_jsonl(examples: Iterable[EventExample], path: Path) -> int:
    """Write examples in the canonical format (UTF-8, ``\\n`` line ends); returns how many."""
    count = 0
    with Path(path).open("w", encoding="utf-8", newline="\n") as stream:
        for example in examples:
            stream.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
            count += 1
    return count


def _parse_line(line: NumberedLine, labels: LabelSchema, display: str) -> tuple[EventExample | None, list[Issue]]:
    try:
        record = json.loads(line.text)
    except json.JSONDecodeError as problem:
        return None, [error(display, line.number, None, f"not valid JSON: {problem.msg} (column {problem.colno})")]
    if not isinstance(record, dict):
        return None, [error(display, line.number, None, f"expected a JSON object, got {type(record).__name__}")]
    issues = [
        warning(display, line.number, key, f"unknown key '{key}' ignored (known keys: {', '.join(KNOWN_KEYS)})")
        for key in record
        if key not in KNOWN_KEYS
    ]
    try:
        example = example_from_record(record, labels, SourceRef(display, line.number))
    except RecordError as problem:
        return None, issues + [error(display, line.number, problem.field, problem.message)]
    return example, issues


def example_from_record(record: dict[str, Any], labels: LabelSchema, source: SourceRef | None) -> EventExample:
    """One canonical record (the form :meth:`EventExample.to_json` writes) checked against ``labels``;
    raises :class:`RecordError` naming the field at fault. Shared with the ``datasets`` reader (``hf.py``)."""
    example_id = record.get("id")
    if not isinstance(example_id, str) or not example_id:
        raise RecordError("id", "missing or empty 'id' (a non-empty string is required)")
    text = record.get("text")
    if not isinstance(text, str):
        raise RecordError("text", "missing 'text' (a string is required)")
    if not text.strip():
        raise RecordError("text", "empty sentence")
    return EventExample(
        id=example_id,
        text=text,
        tokens=_tokens(record.get("tokens"), text),
        event=_event(record.get("event"), labels),
        actors=_actors(record.get("actors"), text, labels),
        source=source,
        fillers=_fillers(record.get("fillers"), labels),
    )


def _event(value: Any, labels: LabelSchema) -> str | frozenset[str] | None:
    if value is None:
        return None
    if labels.multilabel:
        if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
            raise RecordError("event", "expected a list of class names (labels.task is multilabel)")
        for name in value:
            _check_event_name(name, labels)
        return frozenset(value)
    if not isinstance(value, str):
        raise RecordError("event", f"expected a class name string (labels.task is multiclass), got {value!r}")
    _check_event_name(value, labels)
    return value


def _check_event_name(name: str, labels: LabelSchema) -> None:
    if name not in labels.event_names:
        raise RecordError("event", unknown_label_message(name, labels))


def _offsets(item: Any, field: str, text: str) -> tuple[int, int]:
    if not isinstance(item, dict):
        raise RecordError(field, "expected an object")
    start, end = item.get("char_start"), item.get("char_end")
    if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) or isinstance(end, bool):
        raise RecordError(field, "char_start and char_end must be integers")
    if not 0 <= start < end <= len(text):
        raise RecordError(field, f"offsets {start}:{end} are outside the text (length {len(text)}) or empty")
    return start, end


def _actors(value: Any, text: str, labels: LabelSchema) -> list[ActorSpan] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise RecordError("actors", "expected a list of actor spans")
    spans: list[ActorSpan] = []
    for index, item in enumerate(value):
        field = f"actors[{index}]"
        start, end = _offsets(item, field, text)
        role = item.get("role")
        if role not in labels.role_tags:
            known = ", ".join(labels.role_tags) or "none configured"
            raise RecordError(field, f"unknown actor role {role!r} (known roles: {known})")
        mention = item.get("text")
        if mention is not None and mention != text[start:end]:
            raise RecordError(field, f"text {mention!r} does not match text[{start}:{end}] = {text[start:end]!r}")
        spans.append(ActorSpan(role, start, end))
    _check_no_overlap(spans)
    return spans


def _check_no_overlap(spans: list[ActorSpan]) -> None:
    ordered = sorted(enumerate(spans), key=lambda pair: pair[1].char_start)
    for (first_index, first), (second_index, second) in zip(ordered, ordered[1:]):
        if second.char_start < first.char_end:
            raise RecordError(f"actors[{second_index}]", f"overlaps actors[{first_index}]")


def _fillers(value: Any, labels: LabelSchema) -> tuple[Filler, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise RecordError("fillers", "expected a list of fillers")
    fillers = []
    for index, item in enumerate(value):
        field = f"fillers[{index}]"
        if not isinstance(item, dict) or item.get("role") not in labels.role_tags:
            known = ", ".join(labels.role_tags) or "none configured"
            raise RecordError(field, f"expected {{'role', 'mentions'}} with a known role (known roles: {known})")
        mentions = item.get("mentions")
        if not isinstance(mentions, list) or not mentions or not all(isinstance(m, str) and m.strip() for m in mentions):
            raise RecordError(field, "'mentions' must be a non-empty list of non-empty strings")
        fillers.append(Filler(item["role"], tuple(mentions)))
    return tuple(fillers)


def _tokens(value: Any, text: str) -> list[Token]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecordError("tokens", "expected a list of tokens")
    tokens: list[Token] = []
    for index, item in enumerate(value):
        field = f"tokens[{index}]"
        start, end = _offsets(item, field, text)
        if item.get("text") != text[start:end]:
            message = f"text {item.get('text')!r} does not match text[{start}:{end}] = {text[start:end]!r}"
            raise RecordError(field, message)
        tokens.append(Token(text[start:end], start, end))
    return tokens
