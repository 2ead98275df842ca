"""Corpus statistics: label distribution, actor spans per role, sentence lengths, labeled layers.

:func:`corpus_stats` returns plain JSON-ready data (``conflict-events data stats --json``);
:func:`format_stats` renders the same data as text tables.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from conflict_events.corpora.corpus import Corpus
from conflict_events.labels import LabelSchema
from conflict_events.schema import EventExample

PERCENTILES = (50, 90, 95, 99, 100)


def corpus_stats(corpus: Corpus) -> dict[str, Any]:
    splits = {name: examples for name, examples in corpus.splits().items() if examples is not None}
    return {
        "dev_origin": corpus.dev_origin,
        "merges": {name: report.to_json() for name, report in corpus.merges.items()},
        "splits": {name: split_stats(examples, corpus.labels) for name, examples in splits.items()},
    }


def split_stats(examples: list[EventExample], labels: LabelSchema) -> dict[str, Any]:
    return {
        "examples": len(examples),
        "layers": _layer_counts(examples),
        "events": _event_counts(examples, labels),
        "actor_spans": _span_counts(examples, labels),
        "length_tokens": percentiles([token_count(example) for example in examples]),
        "length_chars": percentiles([len(example.text) for example in examples]),
    }


def token_count(example: EventExample) -> int:
    """Word tokens: the example's own tokens when it has them, else whitespace-separated words."""
    return len(example.tokens) if example.tokens else len(example.text.split())


def percentiles(values: list[int]) -> dict[str, float]:
    """Nearest-rank percentiles (``p100`` is the maximum); empty input gives an empty mapping."""
    if not values:
        return {}
    ordered = sorted(values)
    result: dict[str, float] = {
        f"p{p}": ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] for p in PERCENTILES
    }
    result["mean"] = round(sum(ordered) / len(ordered), 1)
    return result


def _layer_counts(examples: list[EventExample]) -> dict[str, int]:
    counts = Counter(
        (example.has_event_label, example.has_actor_labels) for example in examples
    )
    return {
        "joint": counts[(True, True)],
        "event_only": counts[(True, False)],
        "actors_only": counts[(False, True)],
        "unlabeled": counts[(False, False)],
    }


def _event_counts(examples: list[EventExample], labels: LabelSchema) -> list[dict[str, Any]]:
    counts: Counter[str] = Counter()
    for example in examples:
        if isinstance(example.event, frozenset):
            counts.update(example.event)
        elif example.event is not None:
            counts[example.event] += 1
    return [{"code": c.code, "name": c.name, "count": counts[c.name]} for c in labels.event_classes]


def _span_counts(examples: list[EventExample], labels: LabelSchema) -> list[dict[str, Any]]:
    counts = Counter(span.role for example in examples for span in example.actors or [])
    return [{"tag": r.tag, "name": r.name, "count": counts[r.tag]} for r in labels.actor_roles]


# --- text rendering ----------------------------------------------------------------------------
def format_table(header: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table; numeric columns are right-aligned, others left-aligned."""
    cells = [header] + [[str(value) for value in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]
    numeric = [all(_is_number(row[column]) for row in rows) for column in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(
            value.rjust(width) if right else value.ljust(width) for value, width, right in zip(row, widths, numeric)
        ).rstrip()

    return "\n".join([line(cells[0]), line(["-" * width for width in widths])] + [line(row) for row in cells[1:]])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) or value == "-"


def format_stats(stats: dict[str, Any]) -> str:
    splits: dict[str, dict[str, Any]] = stats["splits"]
    names = list(splits)
    sections = [f"dev: {stats['dev_origin']}"]
    for name, merge in stats["merges"].items():
        sections.append(
            f"{name} merge: {merge['matched']} matched, {merge['class_only']} class-only, "
            f"{merge['actors_only']} actors-only ({merge['revised_pairs']} reworded pairs kept apart)"
        )
    sections.append(
        "Labeled layers\n"
        + format_table(
            ["layer"] + names,
            [[layer] + [splits[n]["layers"][layer] for n in names] for layer in splits[names[0]]["layers"]]
            + [["total"] + [splits[n]["examples"] for n in names]],
        )
    )
    sections.append(_count_table("Event classes", ["code", "name"], "events", ("code", "name"), splits))
    if splits[names[0]]["actor_spans"]:
        sections.append(_count_table("Actor spans", ["tag", "role"], "actor_spans", ("tag", "name"), splits))
    for key, title in (("length_tokens", "Sentence length (tokens)"), ("length_chars", "Sentence length (characters)")):
        statistics = list(splits[names[0]][key]) or ["p50"]
        rows = [[statistic] + [splits[n][key].get(statistic, "-") for n in names] for statistic in statistics]
        sections.append(f"{title}\n" + format_table(["stat"] + names, rows))
    return "\n\n".join(sections)


def _count_table(
    title: str, label_header: list[str], key: str, label_fields: tuple[str, str], splits: dict[str, dict[str, Any]]
) -> str:
    names = list(splits)
    rows = []
    for position, entry in enumerate(splits[names[0]][key]):
        counts = [splits[n][key][position]["count"] for n in names]
        rows.append([entry[label_fields[0]], entry[label_fields[1]]] + counts)
    return f"{title}\n" + format_table(label_header + names, rows)
