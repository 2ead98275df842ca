"""Evaluation metrics. The event metrics are scikit-learn's (``sklearn.metrics``); strict span F1 is ours.

Events (``sklearn.metrics`` on the examples that carry an event label, as an indicator matrix built by
``MultiLabelBinarizer`` over the schema's classes, so multiclass and multilabel share one path)
    - ``event_accuracy``: ``accuracy_score``, the share of examples whose predicted class (multiclass) or
      set of classes (multilabel: subset accuracy) equals the gold label.
    - per class precision/recall/F1/support: ``precision_recall_fscore_support(average=None)``,
      one-vs-rest (a multiclass prediction is one class); the counts come from
      ``multilabel_confusion_matrix``.
    - ``event_macro_f1``: ``f1_score(average="macro")`` over the classes that occur in the gold labels
      *or* the predictions (sklearn's default label set for 1-d labels), so an absent class that is never
      predicted does not drag the average to zero on a small dev split.
    - multilabel only: ``event_micro_f1`` (``average="micro"``) and ``event_example_f1``
      (``average="samples"``, the example-based F1 the ConfliBERT benchmark publishes for SATP).
    - ``confusion_matrix``: sklearn's, over multiclass examples.
    ``zero_division=0`` everywhere (a class never predicted, or never gold, has precision/recall 0, and
    so F1 0) except the example-based F1, where an example with no gold and no predicted class scores 1
    (``zero_division=1``: nothing to find and nothing claimed is a correct answer); both are the
    conventions this module computed by hand before, and ``tests/test_metrics.py`` checks them. (It needs
    scikit-learn 1.4: 1.3 also gave 1 to an example whose gold and predicted classes are disjoint.)

Actors (seqeval-style strict span matching, ours)
    A predicted span is a true positive only when role, ``char_start`` and ``char_end`` all equal a gold
    span of the same example. ``actor_precision``/``actor_recall``/``actor_f1`` are micro-averaged over
    roles; ``per_role`` has the same numbers per role. Examples whose actor layer is unlabeled
    (``actors is None``) are skipped, as are examples without an event label for the event metrics.
    seqeval computes the same numbers from word-level BIO tags, but our spans are character offsets (the
    prediction step's output, after sub-word alignment), and going back to tags would need the words;
    the set comparison below is the definition itself. ``tests/test_metrics.py`` cross-checks it against
    seqeval's strict IOB2 mode.

A metric with nothing to measure (no labeled example) is ``None``, never a made-up 0.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Iterable, Sequence

import numpy as np
from sklearn import metrics as sklearn_metrics
from sklearn.preprocessing import MultiLabelBinarizer

from conflict_events.schema import ActorSpan

EventLabel = str | frozenset | None
Span = tuple[str, int, int]


# The strict span metrics below (and the per-class threshold search in evaluate.py) count by hand;
# these are their ratios, with 0 for a zero denominator like sklearn's zero_division=0.
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
    # Classes outside the schema can only come from a broken reader or model; still count them.
    seen = set().union(*(gold_set | predicted_set for gold_set, predicted_set in pairs))
    names = list(class_names) + sorted(seen - set(class_names))
    gold_matrix, predicted_matrix = _indicator_matrices(pairs, names)
    columns = list(range(len(names)))
    confusion = sklearn_metrics.multilabel_confusion_matrix(gold_matrix, predicted_matrix, labels=columns)
    precision, recall, f1, support = sklearn_metrics.precision_recall_fscore_support(
        gold_matrix, predicted_matrix, labels=columns, average=None, zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "predicted": int(confusion[i, 1, 1] + confusion[i, 0, 1]),
            "true_positives": int(confusion[i, 1, 1]),
        }
        for i, name in enumerate(names)
    }
    present = [i for i, name in enumerate(names) if per_class[name]["support"] or per_class[name]["predicted"]]
    metrics = {
        "event_accuracy": float(sklearn_metrics.accuracy_score(gold_matrix, predicted_matrix)),
        # No class at all in gold or predictions (multilabel, every label set empty): nothing to average.
        "event_macro_f1": _f1(gold_matrix, predicted_matrix, present, "macro") if present else None,
        "event_examples": len(pairs),
        "per_class": per_class,
    }
    if any(not isinstance(g, str) for g in gold if g is not None):
        # Multilabel: micro-F1 over every (example, class) decision, and the example-based F1 the ConfliBERT
        # benchmark publishes for SATP (per example 2|G & P| / (|G| + |P|), 1 when both are empty; averaged).
        metrics["event_micro_f1"] = _f1(gold_matrix, predicted_matrix, columns, "micro")
        metrics["event_example_f1"] = _f1(gold_matrix, predicted_matrix, columns, "samples", zero_division=1)
    return metrics


def _indicator_matrices(pairs: Sequence[tuple[frozenset[str], frozenset[str]]], names: Sequence[str]):
    """Gold and predicted label sets as 0/1 matrices, one column per name, plus one all-zero column:
    sklearn reads a one-column indicator matrix as binary 1-d labels (and scores classes 0 and 1), so the
    extra column keeps a one-class schema multilabel; every call selects the real columns by ``labels``,
    and a column of zeros changes no example's exact match and no example-based F1."""
    binarizer = MultiLabelBinarizer(classes=list(names))
    gold_matrix = binarizer.fit_transform([gold_set for gold_set, _ in pairs])
    predicted_matrix = binarizer.transform([predicted_set for _, predicted_set in pairs])
    padding = np.zeros((len(pairs), 1), dtype=gold_matrix.dtype)
    return np.hstack([gold_matrix, padding]), np.hstack([predicted_matrix, padding])


def _f1(gold_matrix, predicted_matrix, columns: list[int], average: str, zero_division: float = 0) -> float:
    return float(
        sklearn_metrics.f1_score(gold_matrix, predicted_matrix, labels=columns, average=average, zero_division=zero_division)
    )


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
    """Rows = gold class, columns = predicted class, over multiclass examples with an event label
    (sklearn's ``confusion_matrix``; a pair whose gold or predicted class is outside ``class_names``, or
    with no predicted class, is left out)."""
    names = set(class_names)
    pairs = [
        (gold_label, next(iter(predicted_label), None))
        for gold_label, predicted_label in zip(gold, predicted, strict=True)
        if isinstance(gold_label, str)
    ]
    pairs = [(gold_label, first) for gold_label, first in pairs if gold_label in names and first in names]
    if not pairs:  # sklearn refuses labels none of which occur in the gold column
        return np.zeros((len(class_names), len(class_names)), dtype=np.int64)
    with warnings.catch_warnings():
        # sklearn warns on every 1x1 matrix; for a one-class schema that is the right shape.
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        matrix = sklearn_metrics.confusion_matrix(
            [gold_label for gold_label, _ in pairs], [first for _, first in pairs], labels=list(class_names)
        )
    return matrix.astype(np.int64, copy=False)
