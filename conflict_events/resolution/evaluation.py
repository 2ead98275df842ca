"""Scoring resolution against the team's gold set (``data/resolution_gold/gold.jsonl``, built by its
``build_gold.py``): with the gold actor spans (resolution alone) or with a model's spans (end to end).

Metrics (``score``):

- ``country_accuracy``, ``sector_accuracy``: over gold actor spans (null = null is right); end to end, a
  gold span no predicted span matches exactly (same offsets) counts as wrong;
- ``sector_macro_f1``: F1 per sector over the codebook codes present in gold or predictions, averaged;
  end to end, an unmatched gold span is a miss of its sector and an unmatched predicted span a false alarm
  of its own;
- ``null_country_precision`` (and recall): of the matched spans resolved to no country, the share whose
  gold country is null too;
- ``place_f1`` (precision, recall): place mentions with exact offsets; ``place_country_f1``: the same,
  counting a mention right only with the gold country too;
- ``event_country_accuracy``: over gold sentences (null = null is right); end to end, a gold sentence the
  splitter did not produce with the same offsets counts as wrong.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from conflict_events.errors import DataError, Issue, Location
from conflict_events.records import SentenceRecord
from conflict_events.resolution.codebook import RESOLVED_BY
from conflict_events.resolution.resolver import Resolver

DEFAULT_GOLD = Path(__file__).resolve().parents[2] / "data" / "resolution_gold" / "gold.jsonl"


@dataclass(frozen=True)
class GoldActor:
    char_start: int
    char_end: int
    text: str
    country: str | None
    sector: str
    org: str | None


@dataclass(frozen=True)
class GoldPlace:
    char_start: int
    char_end: int
    text: str
    country: str
    kind: str


@dataclass(frozen=True)
class GoldDocument:
    id: str
    text: str
    sentences: tuple[tuple[int, int, str | None], ...]  # (char_start, char_end, event_country)
    actors: tuple[tuple[GoldActor, ...], ...]  # per sentence
    places: tuple[GoldPlace, ...]


@dataclass
class ResolvedDocument:
    """What the system said about one document (the same shape with gold spans or a model's)."""

    sentences: list[tuple[int, int, str | None]] = field(default_factory=list)
    actors: dict[tuple[int, int], tuple[str | None, str | None, str | None, str | None]] = field(default_factory=dict)
    places: dict[tuple[int, int], str] = field(default_factory=dict)  # offsets -> country


def read_gold(path: str | Path = DEFAULT_GOLD) -> list[GoldDocument]:
    path = Path(path)
    if not path.is_file():
        raise DataError(Issue(Location(str(path)), "gold set not found (build it with data/resolution_gold/build_gold.py)"))
    documents = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            sentences = tuple((s["char_start"], s["char_end"], s["event_country"]) for s in raw["sentences"])
            actors: list[list[GoldActor]] = [[] for _ in sentences]
            for a in raw["actors"]:
                actors[a["sentence_index"]].append(
                    GoldActor(a["char_start"], a["char_end"], a["text"], a["country"], a["sector"], a["org"])
                )
            places = tuple(GoldPlace(p["char_start"], p["char_end"], p["text"], p["country"], p["kind"]) for p in raw["places"])
            document = GoldDocument(raw["id"], raw["text"], sentences, tuple(map(tuple, actors)), places)
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise DataError(Issue(Location(str(path), number), f"not a gold document ({type(error).__name__}: {error})")) from None
        for item in (*[a for group in document.actors for a in group], *document.places):
            if document.text[item.char_start : item.char_end] != item.text:
                raise DataError(
                    Issue(Location(str(path), number), f"offsets {item.char_start}-{item.char_end} do not give {item.text!r}")
                )
        documents.append(document)
    return documents


def resolve_gold_spans(resolver: Resolver, documents: Sequence[GoldDocument]) -> list[ResolvedDocument]:
    """Resolution alone: the gold sentences and actor spans, the resolver's countries, sectors and places."""
    resolved = []
    for document in documents:
        sentences = [(start, end) for start, end, _ in document.sentences]
        spans = [[(a.char_start, a.char_end) for a in group] for group in document.actors]
        output = ResolvedDocument()
        for (start, end), group, sentence in zip(sentences, spans, resolver.resolve_document(document.text, sentences, spans)):
            output.sentences.append((start, end, sentence.event_country))
            for span, actor in zip(group, sentence.actors):
                output.actors[span] = (actor.country, actor.sector, actor.org, actor.resolved_by)
            for place in sentence.locations:
                output.places[(place.char_start, place.char_end)] = place.country
        resolved.append(output)
    return resolved


def from_records(records: Sequence[SentenceRecord]) -> ResolvedDocument:
    """End to end: one document's predicted records (its sentences, the model's spans, their resolution)."""
    output = ResolvedDocument()
    for record in records:
        output.sentences.append((record.char_start, record.char_end, record.event_country))
        for actor in record.actors:
            output.actors[(actor.char_start, actor.char_end)] = (actor.country, actor.sector, actor.org, actor.resolved_by)
        for place in record.locations or ():
            output.places[(place.char_start, place.char_end)] = place.country
    return output


def _f1(true_positives: int, predicted: int, gold: int) -> tuple[float, float, float]:
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def score(gold: Sequence[GoldDocument], resolved: Sequence[ResolvedDocument]) -> dict[str, Any]:
    """The metrics of the module's docstring, plus counts and a breakdown by ``resolved_by``."""
    country_right = sector_right = gold_spans = matched = 0
    null_predicted = null_right = null_gold = 0
    sector_tp: Counter[str] = Counter()
    sector_pred: Counter[str] = Counter()
    sector_gold: Counter[str] = Counter()
    by_rule: Counter[str] = Counter()
    by_rule_right: Counter[str] = Counter()
    place_tp = place_country_tp = place_pred = place_gold = 0
    event_right = event_total = 0
    for document, output in zip(gold, resolved):
        gold_offsets = set()
        for group in document.actors:
            for actor in group:
                span = (actor.char_start, actor.char_end)
                gold_offsets.add(span)
                gold_spans += 1
                sector_gold[actor.sector] += 1
                null_gold += actor.country is None
                if span not in output.actors:
                    continue
                matched += 1
                country, sector, _, resolved_by = output.actors[span]
                country_right += country == actor.country
                sector_right += sector == actor.sector
                sector_tp[actor.sector] += sector == actor.sector
                rule = resolved_by or "none"
                by_rule[rule] += 1
                by_rule_right[rule] += country == actor.country
                if country is None:
                    null_predicted += 1
                    null_right += actor.country is None
        for _, sector, _, _ in output.actors.values():
            sector_pred[sector or "none"] += 1
        gold_places = {(p.char_start, p.char_end): p.country for p in document.places}
        place_gold += len(gold_places)
        place_pred += len(output.places)
        for span, country in output.places.items():
            if span in gold_places:
                place_tp += 1
                place_country_tp += gold_places[span] == country
        predicted_sentences = {(start, end): country for start, end, country in output.sentences}
        for start, end, country in document.sentences:
            event_total += 1
            if (start, end) in predicted_sentences:
                event_right += predicted_sentences[(start, end)] == country
    sectors = sorted(set(sector_gold) | {s for s in sector_pred if s != "none"})
    per_sector = {s: _f1(sector_tp[s], sector_pred[s], sector_gold[s])[2] for s in sectors}
    place_p, place_r, place_f = _f1(place_tp, place_pred, place_gold)
    _, _, place_country_f = _f1(place_country_tp, place_pred, place_gold)
    return {
        "actor_spans": gold_spans,
        "actor_spans_matched": matched,
        "country_accuracy": country_right / gold_spans if gold_spans else 0.0,
        "sector_accuracy": sector_right / gold_spans if gold_spans else 0.0,
        "sector_macro_f1": sum(per_sector.values()) / len(per_sector) if per_sector else 0.0,
        "sector_f1": per_sector,
        "null_country_precision": null_right / null_predicted if null_predicted else 0.0,
        "null_country_recall": null_right / null_gold if null_gold else 0.0,
        "null_country_predicted": null_predicted,
        "null_country_gold": null_gold,
        "place_mentions": place_gold,
        "place_precision": place_p,
        "place_recall": place_r,
        "place_f1": place_f,
        "place_country_f1": place_country_f,
        "sentences": event_total,
        "event_country_accuracy": event_right / event_total if event_total else 0.0,
        "resolved_by": {
            rule: {"spans": by_rule[rule], "country_accuracy": by_rule_right[rule] / by_rule[rule]}
            for rule in (*RESOLVED_BY, "none")
            if by_rule[rule]
        },
    }


def format_report(title: str, report: dict[str, Any]) -> str:
    lines = [
        title,
        f"  actor spans:            {report['actor_spans']} gold, {report['actor_spans_matched']} matched",
        f"  country accuracy:       {report['country_accuracy']:.3f}",
        f"  sector accuracy:        {report['sector_accuracy']:.3f}",
        f"  sector macro-F1:        {report['sector_macro_f1']:.3f}",
        f"  null-country precision: {report['null_country_precision']:.3f} "
        f"({report['null_country_predicted']} predicted null, {report['null_country_gold']} gold null; "
        f"recall {report['null_country_recall']:.3f})",
        f"  place mentions:         {report['place_mentions']} gold; P {report['place_precision']:.3f} "
        f"R {report['place_recall']:.3f} F1 {report['place_f1']:.3f} (with the country right: F1 {report['place_country_f1']:.3f})",
        f"  event-country accuracy: {report['event_country_accuracy']:.3f} ({report['sentences']} sentences)",
        "  country by resolved_by: "
        + ", ".join(f"{rule} {v['spans']} ({v['country_accuracy']:.2f})" for rule, v in report["resolved_by"].items()),
        "  sector F1:              " + ", ".join(f"{s} {f:.2f}" for s, f in report["sector_f1"].items()),
    ]
    return "\n".join(lines)
