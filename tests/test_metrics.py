"""Metrics on hand-made gold/prediction pairs whose numbers were worked out on paper."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conflict_events.labels import ActorRole, EventClass, LabelSchema
from conflict_events.prediction import PredictedSpan, TextPrediction
from conflict_events.schema import ActorSpan, EventExample
from conflict_events.training.evaluate import score_predictions, tune_thresholds
from conflict_events.training.metrics import confusion_matrix, event_metrics, selection_score, span_metrics
from conflict_events.training.reports import classification_report

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


# --- the sklearn-backed event metrics keep the conventions that were computed by hand --------------------
def counted(gold, predicted, class_names) -> dict:
    """The event metrics as this module counted them before they were sklearn's: P/R/F1 per class from
    true positives, predictions and gold labels (0 when a denominator is 0), macro over the classes that
    occur in gold or predictions, subset accuracy, micro over every decision, per-example F1 (1 when an
    example has no gold and no predicted class)."""

    def ratio(numerator, denominator):
        return numerator / denominator if denominator else 0.0

    pairs = [(frozenset([g]) if isinstance(g, str) else g, frozenset(p)) for g, p in zip(gold, predicted) if g is not None]
    names = list(class_names) + sorted({n for g, p in pairs for n in g | p} - set(class_names))
    per_class = {}
    for name in names:
        tp = sum(name in g and name in p for g, p in pairs)
        n_pred, n_gold = sum(name in p for _, p in pairs), sum(name in g for g, _ in pairs)
        precision, recall = ratio(tp, n_pred), ratio(tp, n_gold)
        per_class[name] = {"precision": precision, "recall": recall, "f1": ratio(2 * precision * recall, precision + recall),
                           "support": n_gold, "predicted": n_pred, "true_positives": tp}
    present = [v["f1"] for v in per_class.values() if v["support"] or v["predicted"]]
    tp, n_pred, n_gold = (sum(v[key] for v in per_class.values()) for key in ("true_positives", "predicted", "support"))
    precision, recall = ratio(tp, n_pred), ratio(tp, n_gold)
    return {
        "event_accuracy": sum(g == p for g, p in pairs) / len(pairs),
        "event_macro_f1": sum(present) / len(present) if present else None,
        "per_class": per_class,
        "event_micro_f1": ratio(2 * precision * recall, precision + recall),
        "event_example_f1": sum(1.0 if not g and not p else 2 * len(g & p) / (len(g) + len(p)) for g, p in pairs) / len(pairs),
    }


def assert_same_metrics(metrics: dict, expected: dict) -> None:
    assert list(metrics["per_class"]) == list(expected["per_class"])
    for name, values in expected["per_class"].items():
        got = metrics["per_class"][name]
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in values.items()}  # floats and ints, not numpy's
        assert got == pytest.approx(values, rel=1e-12, abs=1e-15), name
    keys = ["event_accuracy", "event_macro_f1"] + (["event_micro_f1", "event_example_f1"] if "event_micro_f1" in metrics else [])
    for key in keys:
        assert (metrics[key] is None) == (expected[key] is None), key
        if expected[key] is not None:
            assert metrics[key] == exactly(expected[key]), key


def test_a_class_never_gold_or_only_predicted_or_only_gold_scores_zero_as_before():
    # A: right once; B: gold once, never predicted; C: predicted once, never gold; D: neither.
    metrics = event_metrics(["A", "B", "A"], [("A",), ("C",), ("C",)], ["A", "B", "C", "D"])
    assert metrics["per_class"]["A"] == {
        "precision": 1.0, "recall": 0.5, "f1": exactly(2 / 3), "support": 2, "predicted": 1, "true_positives": 1,
    }
    for name in "BCD":
        assert [metrics["per_class"][name][key] for key in ("precision", "recall", "f1")] == [0.0, 0.0, 0.0], name
    assert metrics["event_macro_f1"] == exactly((2 / 3) / 3)  # over A, B, C; D occurs nowhere
    assert_same_metrics(metrics, counted(["A", "B", "A"], [("A",), ("C",), ("C",)], ["A", "B", "C", "D"]))


def test_sklearn_metrics_equal_the_hand_counted_ones_on_random_cases():
    rng = np.random.default_rng(21)
    for case in range(300):
        names = [f"c{i}" for i in range(int(rng.integers(1, 6)))]
        multilabel = case % 2 == 1
        gold, predicted = [], []
        for _ in range(int(rng.integers(1, 25))):
            if rng.random() < 0.1:
                gold.append(None)
            elif multilabel:  # now and then a class outside the schema, on either side
                gold.append(frozenset(n for n in names + ["zz"] if rng.random() < 0.3))
            else:
                gold.append(str(rng.choice(names + (["zz"] if rng.random() < 0.05 else []))))
            if multilabel:
                predicted.append(tuple(n for n in names + ["aa"] if rng.random() < 0.3))
            else:
                predicted.append((str(rng.choice(names + (["aa"] if rng.random() < 0.05 else []))),))
        if all(g is None for g in gold):
            continue
        assert_same_metrics(event_metrics(gold, predicted, names), counted(gold, predicted, names))


def test_an_example_with_disjoint_gold_and_predicted_classes_scores_zero_not_one():
    # scikit-learn 1.3 scored it 1 under zero_division=1 (sklearn #26965), hence scikit-learn>=1.4.
    metrics = event_metrics([frozenset({"A"}), frozenset()], [("B",), ()], ["A", "B"])
    assert metrics["event_example_f1"] == exactly(1 / 2)  # 0 for the first, 1 for the empty one
    assert metrics["event_micro_f1"] == 0.0


def test_a_one_class_schema_is_scored_per_class_not_as_sklearns_binary_labels():
    metrics = event_metrics([frozenset({"A"}), frozenset(), frozenset({"A"})], [("A",), ("A",), ()], ["A"])
    assert list(metrics["per_class"]) == ["A"]
    assert metrics["per_class"]["A"]["f1"] == exactly(1 / 2)
    assert metrics["event_example_f1"] == exactly(1 / 3)
    assert event_metrics(["A", "A"], [("A",), ("A",)], ["A"])["event_macro_f1"] == 1.0


def test_multilabel_examples_without_any_class_score_one_each_and_no_macro():
    metrics = event_metrics([frozenset(), frozenset()], [(), ()], ["A", "B"])
    assert metrics["event_accuracy"] == 1.0
    assert metrics["event_example_f1"] == 1.0  # nothing to find, nothing claimed
    assert metrics["event_micro_f1"] == 0.0
    assert metrics["event_macro_f1"] is None  # no class occurs: nothing to average (it used to divide by zero)
    assert "macro F1   n/a" in classification_report(metrics)


def test_confusion_matrix_counts_multiclass_pairs_in_schema_order():
    gold = ["A", "B", "A", None, "Z", "C", frozenset({"A"})]
    predicted = [("B",), ("B",), ("A",), ("A",), ("A",), (), ("A",)]
    matrix = confusion_matrix(gold, predicted, ["A", "B", "C"])
    # (A, B), (B, B), (A, A); unlabeled, out-of-schema gold, no prediction and multilabel rows left out.
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert matrix.dtype == np.int64
    assert confusion_matrix([None], [("A",)], ["A", "B"]).tolist() == [[0, 0], [0, 0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert confusion_matrix(["A", "A"], [("A",), ("A",)], ["A"]).tolist() == [[2]]


# --- strict span F1 against seqeval ------------------------------------------------------------------
# Each sentence: words, gold spans and predicted spans as (role, first word, end word). The spans are
# turned into character offsets for span_metrics and into IOB2 word tags for seqeval.
SENTENCES = [
    # exact source; target one word short
    ("Israeli troops attacked Hamas fighters in Gaza".split(), [("S", 0, 2), ("T", 3, 5)], [("S", 0, 2), ("T", 3, 4)]),
    # two reciprocal actors predicted as one mention
    ("India and Pakistan held talks".split(), [("R", 0, 1), ("R", 2, 3)], [("R", 0, 3)]),
    # two adjacent mentions of one role (B-S B-S), both found
    ("Police protesters clashed downtown".split(), [("S", 0, 1), ("S", 1, 2)], [("S", 0, 1), ("S", 1, 2)]),
    # nothing gold, a false target
    ("It rained all day".split(), [], [("T", 1, 2)]),
    # right words, wrong role
    ("Rebels shelled the town".split(), [("S", 0, 1), ("T", 2, 4)], [("T", 0, 1), ("T", 2, 4)]),
    # a missed target
    ("The ministry condemned the attack on villagers".split(), [("S", 0, 2), ("T", 6, 7)], [("S", 0, 2)]),
    # a source that runs one word too far
    ("Army units and police raided the camp".split(),
     [("S", 0, 2), ("S", 3, 4), ("T", 5, 7)], [("S", 0, 2), ("S", 3, 5), ("T", 5, 7)]),
]


def char_spans(words: list[str], spans: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]
    return [(role, starts[first], starts[end - 1] + len(words[end - 1])) for role, first, end in spans]


def iob2(words: list[str], spans: list[tuple[str, int, int]]) -> list[str]:
    tags = ["O"] * len(words)
    for role, first, end in spans:
        tags[first] = f"B-{role}"
        for i in range(first + 1, end):
            tags[i] = f"I-{role}"
    return tags


def test_strict_span_f1_equals_seqeval_strict_iob2():
    from seqeval.metrics import classification_report as seqeval_report
    from seqeval.metrics import f1_score as seqeval_f1
    from seqeval.metrics import precision_score as seqeval_precision
    from seqeval.metrics import recall_score as seqeval_recall
    from seqeval.scheme import IOB2

    gold = [[ActorSpan(*span) for span in char_spans(words, g)] for words, g, _ in SENTENCES]
    predicted = [char_spans(words, p) for words, _, p in SENTENCES]
    ours = span_metrics(gold, predicted, ["S", "T", "R"])
    gold_tags = [iob2(words, g) for words, g, _ in SENTENCES]
    predicted_tags = [iob2(words, p) for words, _, p in SENTENCES]
    strict = {"mode": "strict", "scheme": IOB2}
    assert ours["actor_precision"] == exactly(seqeval_precision(gold_tags, predicted_tags, **strict))
    assert ours["actor_recall"] == exactly(seqeval_recall(gold_tags, predicted_tags, **strict))
    assert ours["actor_f1"] == exactly(seqeval_f1(gold_tags, predicted_tags, **strict))
    report = seqeval_report(gold_tags, predicted_tags, output_dict=True, zero_division=0, **strict)
    for role in ("S", "T", "R"):
        assert ours["per_role"][role]["precision"] == exactly(report[role]["precision"]), role
        assert ours["per_role"][role]["recall"] == exactly(report[role]["recall"]), role
        assert ours["per_role"][role]["f1"] == exactly(report[role]["f1-score"]), role
        assert ours["per_role"][role]["support"] == report[role]["support"], role
    # and the numbers worked out by hand: 13 gold, 12 predicted, 7 exact (sentences 0: S; 2: S, S; 4: T;
    # 5: S; 6: S, T) -> P 7/12, R 7/13, F1 2*7/(12+13)
    assert (ours["actor_precision"], ours["actor_recall"]) == (exactly(7 / 12), exactly(7 / 13))
    assert ours["actor_f1"] == exactly(14 / 25)
