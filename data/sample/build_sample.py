"""Build the sample corpus from its hand-written sources.

Reads ``source/sentences.txt`` (one example per line, inline actor markup) and writes
``events.jsonl`` in the project's canonical JSONL form; reads ``articles/*.txt`` and writes
``articles.jsonl``. Output is deterministic: records follow file order (articles: sorted file
names), ids are positional, and JSON keys are written in a fixed order.

Authoring format, one example per line::

    <event_name> | <sentence with inline actor markup>

* ``event_name`` is one of EVENT_NAMES, or ``-`` for an example without an event label.
* Actor spans are written ``[S text]``, ``[T text]`` or ``[R text]`` (source, target,
  reciprocal). Spans cannot nest, and square brackets may not appear otherwise.
* A sentence starting with ``~ `` has an unlabeled actor layer: the record gets no
  ``actors`` key (it must then contain no markup). A labeled sentence with no spans gets
  ``"actors": []``.
* Blank lines and lines starting with ``#`` are ignored.

Any malformed line stops the build with an error naming the file and line number.

Usage (from the repository root)::

    .venv/bin/python data/sample/build_sample.py          # rebuild and print counts
    .venv/bin/python data/sample/build_sample.py --check  # fail if the outputs are stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SENTENCES = HERE / "source" / "sentences.txt"
EVENTS_OUT = HERE / "events.jsonl"
ARTICLES_DIR = HERE / "articles"
ARTICLES_OUT = HERE / "articles.jsonl"

EVENT_NAMES = ("neutral", "verbal_cooperation", "material_cooperation", "verbal_conflict", "material_conflict")
ROLES = ("S", "T", "R")
NO_EVENT = "-"
NO_ACTORS = "~ "
ID_FORMAT = "sample-{:04d}"

# "[S text]": a role tag, one space, then text without brackets.
SPAN_RE = re.compile(r"\[([A-Z]+) ([^\[\]]*)\]")


class SampleFormatError(ValueError):
    """A line of the authoring file that cannot be parsed."""


def parse_markup(marked: str) -> tuple[str, list[dict]]:
    """Strip inline markup; return the plain text and its actor spans (character offsets)."""
    text_parts: list[str] = []
    actors: list[dict] = []
    length = 0
    cursor = 0
    for match in SPAN_RE.finditer(marked):
        before = marked[cursor : match.start()]
        if "[" in before or "]" in before:
            raise SampleFormatError(f"stray or nested bracket before {match.group(0)!r}")
        role, span_text = match.group(1), match.group(2)
        if role not in ROLES:
            raise SampleFormatError(f"unknown role {role!r} in {match.group(0)!r} (expected one of {ROLES})")
        if not span_text.strip():
            raise SampleFormatError(f"empty span {match.group(0)!r}")
        if span_text != span_text.strip():
            raise SampleFormatError(f"span text has leading/trailing whitespace: {match.group(0)!r}")
        text_parts.append(before)
        length += len(before)
        actors.append({"role": role, "char_start": length, "char_end": length + len(span_text), "text": span_text})
        text_parts.append(span_text)
        length += len(span_text)
        cursor = match.end()
    rest = marked[cursor:]
    if "[" in rest or "]" in rest:
        raise SampleFormatError("stray or unclosed bracket (markup is [S text], [T text] or [R text])")
    text_parts.append(rest)
    text = "".join(text_parts)
    for actor in actors:  # invariant the rest of the project relies on
        if text[actor["char_start"] : actor["char_end"]] != actor["text"]:
            raise SampleFormatError(f"offset mismatch for span {actor['text']!r}")
    return text, actors


def parse_line(line: str) -> tuple[str | None, str, list[dict] | None]:
    """Parse one authoring line into (event or None, text, actors or None)."""
    if " | " not in line:
        raise SampleFormatError("expected '<event_name> | <sentence>'")
    event, body = line.split(" | ", 1)
    event = event.strip()
    if event != NO_EVENT and event not in EVENT_NAMES:
        raise SampleFormatError(f"unknown event name {event!r} (expected one of {EVENT_NAMES} or {NO_EVENT!r})")
    actors_labeled = not body.startswith(NO_ACTORS)
    if not actors_labeled:
        body = body[len(NO_ACTORS) :]
        if event == NO_EVENT:
            raise SampleFormatError("a line cannot have both an unlabeled event ('-') and unlabeled actors ('~')")
    if body != body.strip() or not body:
        raise SampleFormatError("sentence is empty or has leading/trailing whitespace")
    text, actors = parse_markup(body)
    if not actors_labeled and actors:
        raise SampleFormatError("'~' (actors unlabeled) line must not contain actor markup")
    if "  " in text:
        raise SampleFormatError("double space in sentence text")
    return (None if event == NO_EVENT else event), text, (actors if actors_labeled else None)


def build_events(path: Path = SENTENCES) -> list[dict]:
    """Parse the authoring file into canonical JSONL records, in file order."""
    records: list[dict] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.rstrip("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            event, text, actors = parse_line(line)
            if text in seen:
                raise SampleFormatError(f"duplicate sentence (first seen on line {seen[text]})")
        except SampleFormatError as exc:
            raise SampleFormatError(f"{path}:{lineno}: {exc}\n    {line}") from None
        seen[text] = lineno
        record: dict = {"id": ID_FORMAT.format(len(records) + 1), "text": text}
        if event is not None:
            record["event"] = event
        if actors is not None:
            record["actors"] = actors
        records.append(record)
    return records


def build_articles(directory: Path = ARTICLES_DIR) -> list[dict]:
    """One record per ``articles/*.txt`` (sorted by name); the text is the file minus trailing whitespace."""
    records = []
    for path in sorted(directory.glob("*.txt")):
        text = path.read_text(encoding="utf-8").rstrip()
        if not text:
            raise SampleFormatError(f"{path}: empty article")
        records.append({"id": path.stem, "text": text})
    return records


def to_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def summary(records: list[dict]) -> str:
    """Counts per event class and per actor role, for the README and the console."""
    events = Counter(r.get("event") for r in records)
    roles = Counter(a["role"] for r in records for a in r.get("actors") or [])
    with_roles = Counter(role for r in records for role in {a["role"] for a in r.get("actors") or []})
    words = [len(r["text"].split()) for r in records]
    lines = [f"examples: {len(records)} (sentence length {min(words)}-{max(words)} words)", "event classes:"]
    lines += [f"  {name:<22}{events[name]:>4}" for name in EVENT_NAMES]
    lines.append(f"  {'(unlabeled)':<22}{events[None]:>4}")
    lines.append("actor roles (spans / sentences with the role):")
    lines += [f"  {role:<22}{roles[role]:>4} / {with_roles[role]}" for role in ROLES]
    n_unlabeled = sum(1 for r in records if "actors" not in r)
    n_empty = sum(1 for r in records if r.get("actors") == [])
    lines.append(f"  {'(layer unlabeled)':<22}{n_unlabeled:>4}")
    lines.append(f"  {'(labeled, no actors)':<22}{n_empty:>4}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the outputs are up to date; write nothing")
    args = parser.parse_args(argv)
    try:
        events = build_events()
        articles = build_articles()
    except SampleFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    outputs = {EVENTS_OUT: to_jsonl(events), ARTICLES_OUT: to_jsonl(articles)}
    if args.check:
        stale = [p.name for p, content in outputs.items() if not p.exists() or p.read_text(encoding="utf-8") != content]
        if stale:
            print(f"stale: {', '.join(stale)} (run data/sample/build_sample.py)", file=sys.stderr)
            return 1
        print("sample corpus is up to date")
        return 0
    for path, content in outputs.items():
        path.write_text(content, encoding="utf-8")
    print(f"wrote {EVENTS_OUT.relative_to(HERE.parent.parent)} and {ARTICLES_OUT.relative_to(HERE.parent.parent)}")
    print(summary(events))
    print(f"articles: {len(articles)} ({', '.join(a['id'] for a in articles)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
