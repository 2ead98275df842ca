"""Evaluation metrics, computed exactly (no sklearn/seqeval dependency) so tests can check fractions.

Events
    - ``event_accuracy``: share of event-labeled examples whose predicted class (multiclass) or set of
      classes (multilabel, i.e. subset accuracy) equals the gold label.
    - per class precision/recall/F1/support, one-vs-rest (a multiclass prediction is one class).
    - ``event_macro_f1``: unweighted mean F1 over the classes that occur in the gold labels *or* the
      predictions (sklearn's default label set), so an absent class that is never predicted does not
      drag the average to zero on a small dev split.

Actors (seqeval-style strict span matching)
    A predicted span is a true positive only when role, ``char_start`` and ``char_end`` all equal a gold
    span of the same example. ``actor_precision``/``actor_recall``/``actor_f1`` are micro-averaged over
    roles; ``per_role`` has the same numbers per role. Examples whose actor layer is unlabeled
    (``actors is None``) are skipped, as are examples without an event label for the event metrics.

A metric with nothing to measure (no labeled example) is ``None``, never a made-up 0.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

from conflict_events.schema import ActorSpan

EventLabel = str | frozenset | None
Span = tuple[str, int, int]


def safe_divide(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def f1_score(precision: float, recall: float) -> float:
    return safe_divide(2 * precision * recall, precision + recall)


def prf(true_positives: int, predicted: int, gold: int) -> dict[str, float | int]:
    precision = safe_divide(true_positives, predicted)
    recall = safe_divide(true_positives, gold)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1_score(precision, recall),
        "support": gold,
        "predicted": predicted,
        "true_positives": true_positives,
    }


def as_label_set(label: str | frozenset | Iterable[str]) -> frozenset[str]:
    if isinstance(label, str):
        return frozenset([label])
    return frozenset(label)


def event_metrics(
    gold: Sequence[EventLabel],
    predicted: Sequence[Iterable[str]],
    class_names: Sequence[str],
) -> dict:
    """Accuracy, macro-F1 and per-class P/R/F1 over the examples that carry an event label.

    ``gold[i]`` is a class name, a frozenset of names (multilabel) or None (unlabeled: skipped);
    ``predicted[i]`` is the predicted names (one for multiclass).
    """
    pairs = [(as_label_set(g), as_label_set(p)) for g, p in zip(gold, predicted, strict=True) if g is not None]
    if not pairs:
        return {"event_accuracy": None, "event_macro_f1": None, "event_examples": 0, "per_class": {}}
    gold_counts: Counter[str] = Counter()
    predicted_counts: Counter[str] = Counter()
    true_positive_counts: Counter[str] = Counter()
    exact = 0
    for gold_set, predicted_set in pairs:
        gold_counts.update(gold_set)
        predicted_counts.update(predicted_set)
        true_positive_counts.update(gold_set & predicted_set)
        exact += gold_set == predicted_set
    per_class = {
        name: prf(true_positive_counts[name], predicted_counts[name], gold_counts[name]) for name in class_names
    }
    # Classes outside the schema can only come from a broken reader or model; still count them.
    for name in sorted(set(gold_counts) | set(predicted_counts)):
        if name not in per_class:
            per_class[name] = prf(true_positive_counts[name], predicted_counts[name], gold_counts[name])
    present = [name for name in per_class if gold_counts[name] or predicted_counts[name]]
    metrics = {
        "event_accuracy": exact / len(pairs),
        "event_macro_f1": sum(per_class[name]["f1"] for name in present) / len(present),
        "event_examples": len(pairs),
        "per_class": per_class,
    }
    if any(not isinstance(g, str) for g in gold if g is not None):
        # Multilabel: micro-F1 over every (example, class) decision, and the example-based F1 the ConfliBERT
        # benchmark publishes for SATP (per example 2|G & P| / (|G| + |P|), 1 when both are empty; averaged).
        micro = prf(sum(true_positive_counts.values()), sum(predicted_counts.values()), sum(gold_counts.values()))
        metrics["event_micro_f1"] = micro["f1"]
        metrics["event_example_f1"] = sum(
            1.0 if not g and not p else safe_divide(2 * len(g & p), len(g) + len(p)) for g, p in pairs
        ) / len(pairs)
    return metrics


def span_tuples(spans: Iterable) -> set[Span]:
    """``(role, char_start, char_end)`` of ActorSpan / PredictedSpan objects or tuples, as a set."""
    result = set()
    for span in spans:
        if isinstance(span, tuple):
            result.add((str(span[0]), int(span[1]), int(span[2])))
        else:
            result.add((span.role, int(span.char_start), int(span.char_end)))
    return result


def span_metrics(
    gold: Sequence[Sequence[ActorSpan] | None],
    predicted: Sequence[Iterable],
    roles: Sequence[str],
) -> dict:
    """Strict span P/R/F1, micro over roles, plus ``per_role``; unlabeled examples (None) are skipped."""
    gold_counts: Counter[str] = Counter()
    predicted_counts: Counter[str] = Counter()
    true_positive_counts: Counter[str] = Counter()
    examples = 0
    for gold_spans, predicted_spans in zip(gold, predicted, strict=True):
        if gold_spans is None:
            continue
        examples += 1
        gold_set, predicted_set = span_tuples(gold_spans), span_tuples(predicted_spans)
        gold_counts.update(role for role, _, _ in gold_set)
        predicted_counts.update(role for role, _, _ in predicted_set)
        true_positive_counts.update(role for role, _, _ in gold_set & predicted_set)
    if examples == 0:
        return {
            "actor_precision": None,
            "actor_recall": None,
            "actor_f1": None,
            "actor_examples": 0,
            "per_role": {},
        }
    all_roles = list(roles) + sorted((set(gold_counts) | set(predicted_counts)) - set(roles))
    per_role = {
        role: prf(true_positive_counts[role], predicted_counts[role], gold_counts[role]) for role in all_roles
    }
    micro = prf(sum(true_positive_counts.values()), sum(predicted_counts.values()), sum(gold_counts.values()))
    return {
        "actor_precision": micro["precision"],
        "actor_recall": micro["recall"],
        "actor_f1": micro["f1"],
        "actor_examples": examples,
        "per_role": per_role,
    }


def selection_score(metrics: dict, selection_metric: str) -> float:
    """The number that picks the best checkpoint and decides the champion alias.

    ``mean_f1`` is the mean of event macro-F1 and actor F1 over the layers that could be measured
    (a corpus with no actor labels is judged on events alone, and vice versa).
    """
    if selection_metric == "mean_f1":
        values = [metrics.get(key) for key in ("event_macro_f1", "actor_f1")]
        values = [value for value in values if value is not None]
        return sum(values) / len(values) if values else 0.0
    value = metrics.get(selection_metric)
    return 0.0 if value is None else float(value)


def confusion_matrix(gold: Sequence[EventLabel], predicted: Sequence[Iterable[str]], class_names: Sequence[str]):
    """Rows = gold class, columns = predicted class, over multiclass examples with an event label."""
    import numpy as np

    index = {name: i for i, name in enumerate(class_names)}
    matrix = np.zeros((len(class_names), len(class_names)), dtype=np.int64)
    for gold_label, predicted_label in zip(gold, predicted, strict=True):
        if gold_label is None or not isinstance(gold_label, str):
            continue
        predicted_names = list(predicted_label)
        if gold_label in index and predicted_names and predicted_names[0] in index:
            matrix[index[gold_label], index[predicted_names[0]]] += 1
    return matrix
