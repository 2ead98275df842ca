"""Metrics on hand-made gold/prediction pairs whose numbers were worked out on paper."""

from __future__ import annotations

import numpy as np
import pytest

from conflict_events.labels import ActorRole, EventClass, LabelSchema
from conflict_events.prediction import PredictedSpan, TextPrediction
from conflict_events.schema import ActorSpan, EventExample
from conflict_events.training.evaluate import score_predictions, tune_thresholds
from conflict_events.training.metrics import event_metrics, selection_score, span_metrics

SCHEMA = LabelSchema(
    event_classes=(EventClass(0, "A"), EventClass(1, "B"), EventClass(2, "C"), EventClass(3, "D")),
    actor_roles=(ActorRole("S", "source"), ActorRole("T", "target")),
)


def exactly(value: float):
    return pytest.approx(value, rel=1e-12, abs=1e-15)


def predicted(event: str, *spans: tuple[str, int, int]) -> TextPrediction:
    scores = np.array([1.0 if name == event else 0.0 for name in SCHEMA.event_names])
    return TextPrediction(scores, (event,), tuple(PredictedSpan(r, s, e, 1.0) for r, s, e in spans))


# gold events A, B, A, (unlabeled); predictions A, A, B, C.
# gold actors: ex0 S(0,5) T(10,15); ex1 S(0,3); ex2 unlabeled; ex3 labeled, none.
# predicted:   ex0 S(0,5) T(10,14); ex1 none;   ex2 S(1,2);    ex3 T(2,4).
EXAMPLES = [
    EventExample("e0", "x" * 20, event="A", actors=[ActorSpan("S", 0, 5), ActorSpan("T", 10, 15)]),
    EventExample("e1", "x" * 20, event="B", actors=[ActorSpan("S", 0, 3)]),
    EventExample("e2", "x" * 20, event="A", actors=None),
    EventExample("e3", "x" * 20, event=None, actors=[]),
]
PREDICTIONS = [
    predicted("A", ("S", 0, 5), ("T", 10, 14)),
    predicted("A"),
    predicted("B", ("S", 1, 2)),
    predicted("C", ("T", 2, 4)),
]


def test_event_metrics_skip_unlabeled_examples_and_average_over_seen_classes():
    metrics = score_predictions(EXAMPLES, PREDICTIONS, SCHEMA)
    # 3 event-labeled examples, 1 correct.
    assert metrics["event_accuracy"] == exactly(1 / 3)
    # A: predicted twice (e0, e1), gold twice (e0, e2), 1 hit -> P = R = F1 = 1/2. B: 0.
    assert metrics["per_class"]["A"]["precision"] == exactly(1 / 2)
    assert metrics["per_class"]["A"]["recall"] == exactly(1 / 2)
    assert metrics["per_class"]["A"]["f1"] == exactly(1 / 2)
    assert metrics["per_class"]["B"]["f1"] == 0.0
    # C was predicted only for the unlabeled e3 and D never occurs: macro over {A, B}.
    assert metrics["event_macro_f1"] == exactly(1 / 4)


def test_actor_metrics_are_strict_and_micro_over_roles():
    metrics = score_predictions(EXAMPLES, PREDICTIONS, SCHEMA)
    # gold S, T, S (e0, e1); e3 none -> 3 gold. predicted S, T (e0), T (e3) -> 3; e2 skipped.
    # only e0's S matches exactly (T(10,14) is one character short).
    assert metrics["actor_precision"] == exactly(1 / 3)
    assert metrics["actor_recall"] == exactly(1 / 3)
    assert metrics["actor_f1"] == exactly(1 / 3)
    assert metrics["per_role"]["S"]["precision"] == exactly(1.0)
    assert metrics["per_role"]["S"]["recall"] == exactly(1 / 2)
    assert metrics["per_role"]["S"]["f1"] == exactly(2 / 3)
    assert metrics["per_role"]["T"] == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 2, "true_positives": 0,
    }
    assert metrics["actor_examples"] == 3


def test_a_span_with_the_right_offsets_but_the_wrong_role_is_wrong():
    gold = [[ActorSpan("S", 0, 4)]]
    metrics = span_metrics(gold, [[("T", 0, 4)]], ["S", "T"])
    assert metrics["actor_f1"] == 0.0


def test_nothing_to_measure_is_none_not_zero():
    metrics = span_metrics([None, None], [[], []], ["S"])
    assert metrics["actor_f1"] is None
    assert event_metrics([None], [("A",)], ["A"])["event_macro_f1"] is None
    assert selection_score({"event_macro_f1": 0.5, "actor_f1": None}, "mean_f1") == 0.5


def test_multilabel_accuracy_is_subset_accuracy():
    gold = [frozenset({"A", "B"}), frozenset({"C"})]
    metrics = event_metrics(gold, [("A", "B"), ("C", "D")], ["A", "B", "C", "D"])
    assert metrics["event_accuracy"] == exactly(1 / 2)
    # A, B, C perfect; D predicted once, never gold -> 0; macro over {A, B, C, D}.
    assert metrics["event_macro_f1"] == exactly(3 / 4)


def test_multilabel_micro_f1_pools_every_decision_and_example_f1_averages_per_report():
    gold = [frozenset({"A", "B"}), frozenset({"C"}), frozenset()]
    metrics = event_metrics(gold, [("A",), ("C", "D"), ()], ["A", "B", "C", "D"])
    # tp A, C = 2; predicted A, C, D = 3; gold A, B, C = 3 -> P = R = 2/3, F1 = 2/3
    assert metrics["event_micro_f1"] == exactly(2 / 3)
    # per report: 2*1/(2+1), 2*1/(1+2), both empty = 1
    assert metrics["event_example_f1"] == exactly((2 / 3 + 2 / 3 + 1) / 3)
    assert "event_micro_f1" not in event_metrics(["A"], [("A",)], ["A"])  # multiclass: not reported


def test_selection_score_mean_of_event_macro_f1_and_actor_f1():
    assert selection_score({"event_macro_f1": 0.25, "actor_f1": 0.75}, "mean_f1") == 0.5
    assert selection_score({"event_macro_f1": 0.25, "actor_f1": 0.75}, "actor_f1") == 0.75


def test_each_class_gets_the_threshold_that_separates_it_with_a_floor_and_a_fallback():
    schema = LabelSchema(SCHEMA.event_classes[:2], SCHEMA.actor_roles, multilabel=True)
    # A: positives score 0.3 and above, negatives 0.2 or less; B: positives at 0.06, negatives at 0.02.
    examples = [EventExample(str(i), "t", event=frozenset(labels)) for i, labels in enumerate(
        [{"A"}, {"A"}, {"A", "B"}, {"B"}, {"B"}, set(), set()]
    )]
    scores = [[0.35, 0.02], [0.3, 0.02], [0.4, 0.06], [0.2, 0.06], [0.1, 0.06], [0.15, 0.02], [0.05, 0.02]]
    predictions = [TextPrediction(np.array(row), (), ()) for row in scores]
    a, b = tune_thresholds(examples, predictions, schema, floor=0.05, min_support=2)
    assert 0.2 < a <= 0.3  # separates A; of the equally good values, the one closest to 0.5
    assert b == 0.05  # B is separated at the grid's bottom, which is the floor here; never below it
    assert tune_thresholds(examples, predictions, schema, floor=0.05, min_support=4) == (0.5, 0.5)  # too few positives
