"""The filler-level metric of document-level role filler extraction (MUC-4).

A document's gold answer is, per role, a list of entities, each named by its coreferent mention strings
(:class:`~conflict_events.schema.Filler`). The model's answer is, per role, the set of distinct strings of
its predicted spans. Strings are compared case-insensitively with whitespace runs collapsed.

- A predicted filler **finds** a gold entity when it equals any of the entity's mentions; each entity is
  found at most once (true positive).
- A predicted filler that matches an entity another predicted string already found is a coreferent
  duplicate ("FMLN" after "FARABUNDO MARTI NATIONAL LIBERATION FRONT"): it is merged with that entity and
  counts neither for nor against. A span tagger marks every mention it sees, and the task asks for the
  entity once; prior MUC-4 role-filler work counts coreferent extractions once in the same way.
- A predicted filler that matches no gold entity of its role is a false positive; an entity no predicted
  string found is a false negative.

Precision, recall and F1 are given per role and micro over roles (summing the counts), for the examples
that carry fillers; sentence-level corpora have none and get no filler keys at all.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from conflict_events.prediction import TextPrediction
from conflict_events.schema import EventExample
from conflict_events.training.metrics import prf


def normalise_filler(text: str) -> str:
    return " ".join(text.lower().split())


def filler_counts(example: EventExample, prediction: TextPrediction) -> dict[str, tuple[int, int, int]]:
    """``{role: (entities found, predicted fillers counted, gold entities)}`` for one document."""
    gold: dict[str, list[set[str]]] = {}
    for filler in example.fillers or ():
        gold.setdefault(filler.role, []).append({normalise_filler(m) for m in filler.mentions})
    predicted: dict[str, set[str]] = {}
    for span in prediction.actors:
        predicted.setdefault(span.role, set()).add(normalise_filler(example.text[span.char_start : span.char_end]))
    counts = {}
    for role in set(gold) | set(predicted):
        entities = gold.get(role, [])
        found: set[int] = set()
        spurious = 0
        # Sorted, so which of two strings naming the same entity finds it does not depend on set order.
        for string in sorted(predicted.get(role, ())):
            matches = [index for index, mentions in enumerate(entities) if string in mentions]
            if not matches:
                spurious += 1
                continue
            free = [index for index in matches if index not in found]
            if free:
                found.add(free[0])
        counts[role] = (len(found), len(found) + spurious, len(entities))
    return counts


def filler_metrics(
    examples: Sequence[EventExample], predictions: Sequence[TextPrediction], roles: Sequence[str]
) -> dict:
    """``filler_precision``, ``filler_recall``, ``filler_f1`` (micro over roles), ``per_filler_role`` and
    ``filler_examples``; an empty dict when no example carries fillers."""
    totals: dict[str, Counter[str]] = {}
    documents = 0
    for example, prediction in zip(examples, predictions, strict=True):
        if example.fillers is None:
            continue
        documents += 1
        for role, (found, counted, gold) in filler_counts(example, prediction).items():
            totals.setdefault(role, Counter()).update({"tp": found, "predicted": counted, "gold": gold})
    if documents == 0:
        return {}
    ordered = list(roles) + sorted(set(totals) - set(roles))
    per_role = {role: prf(*(totals.get(role, Counter())[key] for key in ("tp", "predicted", "gold"))) for role in ordered}
    micro = prf(*(sum(counter[key] for counter in totals.values()) for key in ("tp", "predicted", "gold")))
    return {
        "filler_precision": micro["precision"],
        "filler_recall": micro["recall"],
        "filler_f1": micro["f1"],
        "filler_examples": documents,
        "per_filler_role": per_role,
    }


__all__ = ["filler_counts", "filler_metrics", "normalise_filler"]
