"""MUC-4 document-level role fillers, in the form the ConfliBERT benchmark ships them (``muc4/*.json``).

The file is one JSON object, ``{doc_id: {"doc": text, "roles": {role: [[mention, ...], ...]}}}``: for each
role, its filler entities, and for each entity its coreferent mention strings (``[["TERRORIST"]]``,
``[["FMLN", "FARABUNDO MARTI NATIONAL LIBERATION FRONT"]]``). The files carry no incident type.

Each document becomes one :class:`EventExample`:

- ``text`` is the document as published (upper case, lines wrapped at about 70 characters);
- ``fillers`` are the entities, each a :class:`Filler` (what evaluation scores, ``training/fillers.py``);
- ``actors`` are every occurrence of every mention in the text, found case-insensitively, on word
  boundaries, with any run of whitespace in a mention matching any run in the text (a name such as
  "HECTOR OQUELI COLINDRES" is broken across a line end in the document); that is what the token head
  trains on, as BIO over windows of the document;
- ``event`` is ``None``: no incident type, so the event head gets no loss.

BIO cannot encode overlapping spans, so where occurrences overlap (a perpetrator organisation "FMLN"
inside the perpetrator "TERRORISTS OF THE FMLN") the longer one is kept, then the earlier, then the role
listed first in ``labels.actor_roles``; each document where a mention was left out under a span of another
role gets one warning naming it (one inside a longer span of its own role loses nothing and is not reported). A filler none of whose mentions occurs in the text (about one in ten upstream, e.g. a
bracketed gloss "[FMLN]" that the text writes in parentheses) is kept as a filler, so recall is measured
against every gold entity as in published evaluations, and is reported as a warning.

The role keys must be the configured role tags (``configs/muc4.yaml`` uses the upstream keys, e.g.
``perp_individual_id``); any other key is an error naming the document and its line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from conflict_events.corpora.textfile import ReadResult, error, warning
from conflict_events.errors import Issue
from conflict_events.labels import LabelSchema
from conflict_events.schema import ActorSpan, EventExample, Filler, SourceRef

_OBJECT_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:\s*\{')


def read_muc4(path: Path, labels: LabelSchema, display: str | None = None) -> ReadResult:
    display = display or str(path)
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return ReadResult([], [error(display, None, None, f"file not found ({path})")])
    except (OSError, UnicodeDecodeError) as problem:
        return ReadResult([], [error(display, None, None, f"cannot read file: {problem}")])
    try:
        documents = json.loads(raw)
    except json.JSONDecodeError as problem:
        return ReadResult([], [error(display, problem.lineno, None, f"not valid JSON: {problem.msg} (column {problem.colno})")])
    if not isinstance(documents, dict) or not documents:
        return ReadResult([], [error(display, None, None, "expected a non-empty JSON object {doc_id: {doc, roles}}")])
    lines = _key_lines(raw)
    examples: list[EventExample] = []
    issues: list[Issue] = []
    for doc_id, record in documents.items():
        example, record_issues = _document(doc_id, record, labels, display, lines.get(doc_id))
        issues += record_issues
        if example is not None:
            examples.append(example)
    return ReadResult(examples, issues)


def _key_lines(raw: str) -> dict[str, int]:
    """The line each document's key opens on (the first ``"key": {`` of that name), for messages."""
    lines: dict[str, int] = {}
    line, counted_to = 1, 0
    for match in _OBJECT_KEY.finditer(raw):
        line += raw.count("\n", counted_to, match.start())
        counted_to = match.start()
        lines.setdefault(json.loads(f'"{match.group(1)}"'), line)
    return lines


def _document(
    doc_id: str, record: Any, labels: LabelSchema, display: str, line: int | None
) -> tuple[EventExample | None, list[Issue]]:
    if not isinstance(record, dict):
        return None, [error(display, line, doc_id, "expected an object with 'doc' and 'roles'")]
    text = record.get("doc")
    if not isinstance(text, str) or not text.strip():
        return None, [error(display, line, f"{doc_id}.doc", "missing or empty 'doc' (the document text)")]
    roles = record.get("roles", {})
    if not isinstance(roles, dict):
        return None, [error(display, line, f"{doc_id}.roles", "expected an object {role: [[mention, ...], ...]}")]
    fillers: list[Filler] = []
    issues: list[Issue] = []
    for role, entities in roles.items():
        field = f"{doc_id}.roles.{role}"
        if role not in labels.role_tags:
            known = ", ".join(labels.role_tags) or "none configured"
            return None, [error(display, line, field, f"unknown role {role!r} (labels.actor_roles tags: {known})")]
        if not isinstance(entities, list) or not all(_is_mention_list(entity) for entity in entities):
            return None, [error(display, line, field, "expected a list of entities, each a non-empty list of strings")]
        fillers += [Filler(role, tuple(entity)) for entity in entities]
    occurrences: list[ActorSpan] = []
    for filler in fillers:
        found = _occurrences(text, filler)
        if not found:
            mentions = " / ".join(filler.mentions)
            issues.append(warning(display, line, f"{doc_id}.roles.{filler.role}", f"filler {mentions!r} does not occur in the document"))
        occurrences += found
    actors, left_out = _without_overlaps(occurrences, labels.role_tags)
    if left_out:
        shown = ", ".join(f"{span.role} {text[span.char_start:span.char_end]!r}@{span.char_start}" for span in left_out[:3])
        more = f" and {len(left_out) - 3} more" if len(left_out) > 3 else ""
        issues.append(warning(display, line, doc_id, f"{len(left_out)} overlapping mention occurrence(s) left out of the BIO labels: {shown}{more}"))
    example = EventExample(
        id=doc_id, text=text, event=None, actors=actors, source=SourceRef(display, line or 1), fillers=tuple(fillers)
    )
    return example, issues


def _is_mention_list(entity: Any) -> bool:
    return isinstance(entity, list) and bool(entity) and all(isinstance(m, str) and m.strip() for m in entity)


def mention_pattern(mention: str) -> re.Pattern[str]:
    """A mention as a case-insensitive pattern on word boundaries, any whitespace run matching any other."""
    words = [re.escape(word) for word in mention.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def _occurrences(text: str, filler: Filler) -> list[ActorSpan]:
    spans = {
        (match.start(), match.end())
        for mention in filler.mentions
        for match in mention_pattern(mention).finditer(text)
    }
    return [ActorSpan(filler.role, start, end) for start, end in sorted(spans)]


def _without_overlaps(spans: list[ActorSpan], role_order: list[str]) -> tuple[list[ActorSpan], list[ActorSpan]]:
    """Keep the longest occurrences first (then the earliest, then the first-listed role); return the
    kept spans in text order and those left out under a span of another role."""
    rank = {role: index for index, role in enumerate(role_order)}
    ordered = sorted(set(spans), key=lambda s: (-(s.char_end - s.char_start), s.char_start, rank[s.role]))
    kept: list[ActorSpan] = []
    left_out: list[ActorSpan] = []
    for span in ordered:
        overlapping = [other for other in kept if span.char_start < other.char_end and other.char_start < span.char_end]
        if not overlapping:
            kept.append(span)
        elif not any(other.role == span.role for other in overlapping):
            # Inside a longer span of its own role (a shorter mention of the same entity) nothing is lost.
            left_out.append(span)
    return sorted(kept, key=lambda s: s.char_start), sorted(left_out, key=lambda s: s.char_start)
