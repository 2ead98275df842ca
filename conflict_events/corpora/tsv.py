"""Reader for sentence-level event TSV files, as distributed by ConfliBERT.

- multiclass (``labels.task: multiclass``), e.g. ``cameo_class/train.tsv``: ``sentence<TAB>label``
  where ``label`` is an event class code (``4``) or name (``material_conflict``);
- multilabel (``labels.task: multilabel``), e.g. ``satp_relevant/train.tsv``:
  ``sentence<TAB>0/1<TAB>0/1...`` with one column per ``labels.event_classes`` entry, in that order.

There is no header line. Sentences carry no tokens (tokenisation belongs to the model) and no actor
layer (``actors`` is ``None``). Example ids are ``<file>:<line>``.
"""

from __future__ import annotations

from pathlib import Path

from conflict_events.corpora.textfile import NumberedLine, ReadResult, error, read_text_lines, warning
from conflict_events.errors import Issue
from conflict_events.labels import LabelSchema
from conflict_events.schema import EventExample, SourceRef


def read_event_tsv(path: Path, labels: LabelSchema, display: str | None = None) -> ReadResult:
    """Read an event TSV file; ``display`` is the name used in ids and messages (default: ``path``)."""
    display = display or str(path)
    lines, issues = read_text_lines(path, display)
    examples: list[EventExample] = []
    for line in lines:
        if not line.text.strip():
            issues.append(warning(display, line.number, None, "blank line (skipped)"))
            continue
        example, line_issues = _parse_line(line, labels, display)
        issues.extend(line_issues)
        if example is not None:
            examples.append(example)
    return ReadResult(examples, issues)


def _expected_columns(labels: LabelSchema) -> list[str]:
    return ["sentence"] + (labels.event_names if labels.multilabel else ["label"])


def _parse_line(
    line: NumberedLine, labels: LabelSchema, display: str
) -> tuple[EventExample | None, list[Issue]]:
    columns = line.text.split("\t")
    expected = _expected_columns(labels)
    if len(columns) != len(expected):
        message = (
            f"expected {len(expected)} tab-separated columns ({', '.join(expected)}), found {len(columns)}"
        )
        return None, [error(display, line.number, None, message)]
    text = columns[0].strip()
    issues: list[Issue] = []
    if not text:
        issues.append(error(display, line.number, "text", "empty sentence"))
    if labels.multilabel:
        event, label_issues = _multilabel_event(columns[1:], labels, display, line.number)
    else:
        event, label_issues = _multiclass_event(columns[1], labels, display, line.number)
    issues.extend(label_issues)
    if issues:
        return None, issues
    example = EventExample(
        id=f"{display}:{line.number}",
        text=text,
        event=event,
        source=SourceRef(display, line.number),
    )
    return example, []


def resolve_event_label(raw: str, labels: LabelSchema) -> str | None:
    """The class name for a code (``"4"``) or a name (``"material_conflict"``); ``None`` if unknown."""
    if raw in labels.event_names:
        return raw
    try:
        return labels.event_by_code(int(raw)).name
    except (ValueError, KeyError):
        return None


def unknown_label_message(raw: str, labels: LabelSchema) -> str:
    if raw.lstrip("-").isdigit():
        known = ", ".join(str(c.code) for c in labels.event_classes)
        return f"unknown event label '{raw}' (known codes: {known})"
    return f"unknown event label '{raw}' (known names: {', '.join(labels.event_names)})"


def _multiclass_event(
    raw: str, labels: LabelSchema, display: str, line: int
) -> tuple[str | None, list[Issue]]:
    raw = raw.strip()
    if not raw:
        return None, [error(display, line, "label", "empty event label")]
    name = resolve_event_label(raw, labels)
    if name is None:
        return None, [error(display, line, "label", unknown_label_message(raw, labels))]
    return name, []


def _multilabel_event(
    flags: list[str], labels: LabelSchema, display: str, line: int
) -> tuple[frozenset[str] | None, list[Issue]]:
    names: set[str] = set()
    issues: list[Issue] = []
    for name, flag in zip(labels.event_names, flags):
        flag = flag.strip()
        if flag == "1":
            names.add(name)
        elif flag != "0":
            issues.append(error(display, line, name, f"expected 0 or 1, got '{flag}'"))
    return (None if issues else frozenset(names)), issues
