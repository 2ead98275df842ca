"""Build the resolution gold set from its hand-written source.

Reads ``source/documents.txt`` and writes ``gold.jsonl``: one JSON object per document with its text, its
sentences (offsets and event country), its actor spans (country, sector, org) and its place mentions
(country, kind), every offset into the document text. The markup is described at the top of the source
file and in README.md. Sentences of a document are joined with one space, so a sentence's offsets are
known without a sentence splitter.

Usage (from the repository root)::

    .venv/bin/python data/resolution_gold/build_gold.py          # rebuild and print counts
    .venv/bin/python data/resolution_gold/build_gold.py --check  # fail if gold.jsonl is stale

Any malformed line stops the build with an error naming the file and line number; every offset is checked
against the text it claims before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from conflict_events.resolution.codebook import PLACE_KINDS, SECTORS
from conflict_events.resolution.tables import known_country_codes

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "source" / "documents.txt"
OUTPUT = HERE / "gold.jsonl"
NONE = "-"


class GoldFormatError(ValueError):
    pass


def parse_sentence(marked: str, codes: frozenset[str]) -> tuple[str, list[dict], list[dict]]:
    """Plain text of one marked sentence, its actor spans and place mentions (offsets into the sentence)."""
    text: list[str] = []
    actors: list[dict] = []
    places: list[dict] = []
    stack: list[tuple[str, int]] = []  # (bracket, start offset in text)
    index = 0
    while index < len(marked):
        char = marked[index]
        if char in "[{":
            if char == "[" and any(b == "[" for b, _ in stack):
                raise GoldFormatError("actor spans cannot nest")
            if char == "{" and any(b == "{" for b, _ in stack):
                raise GoldFormatError("place mentions cannot nest")
            stack.append((char, len("".join(text))))
            index += 1
        elif char == "|":
            if not stack:
                raise GoldFormatError("'|' outside a span")
            bracket, start = stack.pop()
            close = "]" if bracket == "[" else "}"
            end_label = marked.find(close, index)
            if end_label < 0:
                raise GoldFormatError(f"unclosed {bracket}")
            label = marked[index + 1 : end_label].split()
            span_text = "".join(text)[start:]
            if not span_text or span_text != span_text.strip():
                raise GoldFormatError(f"empty span or whitespace at its ends: {span_text!r}")
            end = start + len(span_text)
            if bracket == "[":
                actors.append(_actor(span_text, start, end, label, codes))
            else:
                places.append(_place(span_text, start, end, label, codes))
            index = end_label + 1
        elif char in "]}":
            raise GoldFormatError(f"stray {char!r}")
        else:
            text.append(char)
            index += 1
    if stack:
        raise GoldFormatError("unclosed span")
    return "".join(text), actors, places


def _country(value: str, codes: frozenset[str]) -> str | None:
    if value == NONE:
        return None
    if value not in codes:
        raise GoldFormatError(f"unknown country code {value!r}")
    return value


def _actor(text: str, start: int, end: int, label: list[str], codes: frozenset[str]) -> dict:
    if len(label) < 2:
        raise GoldFormatError(f"actor {text!r}: expected 'COUNTRY SECTOR [ORG]', got {' '.join(label)!r}")
    sector = label[1]
    if sector not in SECTORS:
        raise GoldFormatError(f"actor {text!r}: unknown sector {sector!r}")
    org = " ".join(label[2:]) or None
    return {"char_start": start, "char_end": end, "text": text, "country": _country(label[0], codes), "sector": sector, "org": org}


def _place(text: str, start: int, end: int, label: list[str], codes: frozenset[str]) -> dict:
    if len(label) != 2 or label[1] not in PLACE_KINDS or label[0] == NONE:
        raise GoldFormatError(f"place {text!r}: expected 'COUNTRY KIND' (KIND one of {', '.join(PLACE_KINDS)})")
    return {"char_start": start, "char_end": end, "text": text, "country": _country(label[0], codes), "kind": label[1]}


def build(source: Path = SOURCE) -> list[dict]:
    codes = known_country_codes()
    documents: list[dict] = []
    seen: dict[str, str] = {}
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        where = f"{source}:{number}"
        if not line.strip() or line.startswith("# ") or line == "#":
            continue
        if line.startswith("## "):
            doc_id = line[3:].strip()
            if any(d["id"] == doc_id for d in documents):
                raise SystemExit(f"{where}: duplicate document id {doc_id!r}")
            documents.append({"id": doc_id, "text": "", "sentences": [], "actors": [], "places": []})
            continue
        if not documents:
            raise SystemExit(f"{where}: a sentence before the first '## <id>' line")
        event_country, sep, marked = line.partition(" | ")
        if not sep:
            raise SystemExit(f"{where}: expected '<event country or -> | <sentence>'")
        try:
            event = _country(event_country.strip(), codes)
            text, actors, places = parse_sentence(marked.strip(), codes)
        except GoldFormatError as error:
            raise SystemExit(f"{where}: {error}\n  {line}") from None
        if text in seen:
            raise SystemExit(f"{where}: duplicate sentence (first at {seen[text]})")
        seen[text] = where
        document = documents[-1]
        offset = len(document["text"]) + (1 if document["text"] else 0)
        document["text"] += (" " if document["text"] else "") + text
        index = len(document["sentences"])
        document["sentences"].append({"char_start": offset, "char_end": offset + len(text), "event_country": event})
        for key, items in (("actors", actors), ("places", places)):
            for item in sorted(items, key=lambda i: i["char_start"]):
                item = {**item, "char_start": item["char_start"] + offset, "char_end": item["char_end"] + offset}
                document[key].append({"sentence_index": index, **item})
    for document in documents:
        text = document["text"]
        for item in document["actors"] + document["places"] + document["sentences"]:
            expected = item.get("text", text[item["char_start"] : item["char_end"]])
            if text[item["char_start"] : item["char_end"]] != expected:
                raise SystemExit(f"{document['id']}: offsets {item['char_start']}-{item['char_end']} do not give {expected!r}")
    return documents


def render(documents: list[dict]) -> str:
    return "".join(json.dumps(document, ensure_ascii=False) + "\n" for document in documents)


def counts(documents: list[dict]) -> str:
    actors = [a for d in documents for a in d["actors"]]
    places = [p for d in documents for p in d["places"]]
    sentences = [s for d in documents for s in d["sentences"]]
    sectors = Counter(a["sector"] for a in actors)
    lines = [
        f"documents: {len(documents)}",
        f"sentences: {len(sentences)} ({sum(s['event_country'] is None for s in sentences)} with no event country)",
        f"actor spans: {len(actors)} ({sum(a['country'] is None for a in actors)} with no country, "
        f"{sum(a['org'] is not None for a in actors)} with an org)",
        "sectors: " + ", ".join(f"{code} {sectors[code]}" for code in SECTORS if sectors[code]),
        f"place mentions: {len(places)} ("
        + ", ".join(f"{kind} {n}" for kind, n in sorted(Counter(p['kind'] for p in places).items())) + ")",
        f"countries: {len({a['country'] for a in actors if a['country']} | {p['country'] for p in places})}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if gold.jsonl is not what the source builds")
    args = parser.parse_args(argv)
    documents = build()
    rendered = render(documents)
    if args.check:
        if not OUTPUT.is_file() or OUTPUT.read_text(encoding="utf-8") != rendered:
            print(f"{OUTPUT} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(rendered, encoding="utf-8")
    print(counts(documents))
    return 0


if __name__ == "__main__":
    sys.exit(main())
