"""Reader for CoNLL-style BIO files: one ``token TAG`` per line, a blank line between sentences.

The separator is any run of spaces or tabs (``cameo_ner`` uses a space, ``re3d`` a tab and CRLF line
ends). Tags are ``O``, ``B-<role>`` or ``I-<role>`` with ``<role>`` one of ``labels.actor_roles[].tag``.

The sentence text is rebuilt by joining the tokens with single spaces, so token and actor offsets
index into that text. Penn Treebank bracket/quote escapes (``-LRB-``, ``\\`\\```, ...) are turned back
into the characters they stand for so the text reads naturally.

An ``I-x`` that does not continue a ``B-x``/``I-x`` span is an error naming the line; with
``repair_bio=True`` (config ``data.repair_bio``) it starts a new span instead and is reported as a
warning. A sentence with any error (including a line that is not valid UTF-8) is left out; the error
says why. Example ids are
``<file>:<first line of the sentence>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from conflict_events.corpora.textfile import NumberedLine, ReadResult, error, read_text_lines, warning
from conflict_events.errors import Issue
from conflict_events.labels import OUTSIDE, LabelSchema
from conflict_events.schema import ActorSpan, EventExample, SourceRef, Token

PTB_ESCAPES = {
    "-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}",
    "``": '"', "''": '"',
}  # fmt: skip
_COLUMN_SEPARATOR = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class TaggedToken:
    text: str
    tag: str
    line: int


def read_conll(
    path: Path, labels: LabelSchema, repair_bio: bool = False, display: str | None = None
) -> ReadResult:
    """Read a BIO file into actors-only examples (``event`` is ``None``)."""
    display = display or str(path)
    lines, issues = read_text_lines(path, display)
    # A line that failed to decode is missing from ``lines``; its sentence must not be read without it.
    undecodable = {issue.location.line for issue in issues if issue.location.line is not None}
    examples: list[EventExample] = []
    for sentence in _sentences(lines):
        tokens, sentence_issues = _parse_tokens(sentence, labels, repair_bio, display)
        issues.extend(sentence_issues)
        first, last = sentence[0].number, sentence[-1].number
        broken = any(first - 1 <= number <= last + 1 for number in undecodable)
        if tokens and not broken and not any(issue.severity == "error" for issue in sentence_issues):
            examples.append(_example(tokens, display))
    return ReadResult(examples, issues)


def _sentences(lines: list[NumberedLine]) -> list[list[NumberedLine]]:
    sentences: list[list[NumberedLine]] = [[]]
    for line in lines:
        if line.text.strip():
            sentences[-1].append(line)
        elif sentences[-1]:
            sentences.append([])
    return [sentence for sentence in sentences if sentence]


def _parse_tokens(
    sentence: list[NumberedLine], labels: LabelSchema, repair_bio: bool, display: str
) -> tuple[list[TaggedToken], list[Issue]]:
    tokens: list[TaggedToken] = []
    issues: list[Issue] = []
    previous_tag = None  # None = start of sentence
    for line in sentence:
        columns = _COLUMN_SEPARATOR.split(line.text.strip(" \t"))
        if len(columns) != 2:
            message = f"expected 2 columns (token TAG), found {len(columns)}"
            issues.append(error(display, line.number, None, message))
            previous_tag = None
            continue
        token_text, tag = PTB_ESCAPES.get(columns[0], columns[0]), columns[1]
        tag_issue = _check_tag(tag, labels, display, line.number)
        if tag_issue is None:
            tag, tag_issue = _check_continuation(tag, previous_tag, repair_bio, display, line.number)
        if tag_issue is not None:
            issues.append(tag_issue)
        tokens.append(TaggedToken(token_text, tag, line.number))
        previous_tag = tag
    return tokens, issues


def _check_tag(tag: str, labels: LabelSchema, display: str, line: int) -> Issue | None:
    if tag == OUTSIDE:
        return None
    prefix, _, role = tag.partition("-")
    if prefix not in ("B", "I") or not role:
        return error(display, line, "tag", f"malformed BIO tag '{tag}' (expected O, B-<role> or I-<role>)")
    if role not in labels.role_tags:
        known = ", ".join(labels.role_tags) or "none configured"
        return error(display, line, "tag", f"unknown actor role '{role}' in tag '{tag}' (known roles: {known})")
    return None


def _check_continuation(
    tag: str, previous_tag: str | None, repair_bio: bool, display: str, line: int
) -> tuple[str, Issue | None]:
    """An ``I-x`` must follow ``B-x`` or ``I-x``; repaired to ``B-x`` (with a warning) when allowed."""
    if not tag.startswith("I-") or previous_tag in (f"B-{tag[2:]}", tag):
        return tag, None
    previous = "the start of the sentence" if previous_tag is None else f"'{previous_tag}'"
    repaired = f"B-{tag[2:]}"
    if repair_bio:
        return repaired, warning(
            display, line, "tag", f"'{tag}' does not continue a span (it follows {previous}); read as '{repaired}'"
        )
    return tag, error(
        display,
        line,
        "tag",
        f"'{tag}' does not continue a span (it follows {previous}); "
        f"fix the file or set data.repair_bio: true to read it as '{repaired}'",
    )


def _example(tagged: list[TaggedToken], display: str) -> EventExample:
    tokens: list[Token] = []
    cursor = 0
    for item in tagged:
        tokens.append(Token(item.text, cursor, cursor + len(item.text)))
        cursor += len(item.text) + 1
    first_line = tagged[0].line
    return EventExample(
        id=f"{display}:{first_line}",
        text=" ".join(item.text for item in tagged),
        tokens=tokens,
        event=None,
        actors=spans_from_bio([item.tag for item in tagged], tokens),
        source=SourceRef(display, first_line),
    )


def spans_from_bio(tags: list[str], tokens: list[Token]) -> list[ActorSpan]:
    """Character spans of well-formed BIO tags (every ``I-x`` continues a ``B-x``/``I-x``)."""
    spans: list[ActorSpan] = []
    for tag, token in zip(tags, tokens):
        if tag.startswith("B-"):
            spans.append(ActorSpan(tag[2:], token.char_start, token.char_end))
        elif tag.startswith("I-"):
            last = spans[-1]
            spans[-1] = ActorSpan(last.role, last.char_start, token.char_end)
    return spans
