"""Document-level role fillers: the filler metric, long documents in windows for training and prediction,
and a MUC-4 style corpus trained and evaluated end to end on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conflict_events.alignment import IGNORE_INDEX
from conflict_events.labels import ActorRole, EventClass, LabelSchema
from conflict_events.model import load_joint_model
from conflict_events.prediction import PredictedSpan, TextPrediction, predict_texts, predict_windowed, text_windows, window_size
from conflict_events.schema import ActorSpan, EventExample, Filler
from conflict_events.training.data import encode_examples
from conflict_events.training.fillers import filler_counts, filler_metrics
from conflict_events.training.promotion import SentenceCounts
from conflict_events.training.testing import tiny_config
from conflict_events.training.trainer import train

SCHEMA = LabelSchema((EventClass(0, "no_event_layer"),), (ActorRole("perp", "perpetrator"), ActorRole("target", "target")))
TEXT = "GUERRILLAS OF THE FMLN BOMBED A BUS. THE FMLN AND THE farabundo marti\nfront DENIED IT. A TRUCK BURNED."


def predicted(*spans: tuple[str, str]) -> TextPrediction:
    """A prediction whose spans are the first occurrences of the given strings in TEXT."""
    return TextPrediction(
        np.ones(1), ("no_event_layer",),
        tuple(PredictedSpan(role, TEXT.index(s), TEXT.index(s) + len(s), 1.0) for role, s in spans),
    )


def example(*fillers: Filler) -> EventExample:
    return EventExample("doc", TEXT, event=None, actors=[], fillers=fillers)


FMLN = Filler("perp", ("FMLN", "FARABUNDO MARTI FRONT"))
BUS = Filler("target", ("BUS",))


def test_a_filler_found_by_any_coreferent_mention_counts_once():
    counts = filler_counts(example(FMLN, BUS), predicted(("perp", "FMLN"), ("perp", "farabundo marti\nfront"), ("target", "BUS")))
    # Both strings name one entity: found once, the duplicate neither right nor wrong.
    assert counts == {"perp": (1, 1, 1), "target": (1, 1, 1)}


def test_spurious_and_missed_fillers_cost_precision_and_recall_per_role():
    counts = filler_counts(example(FMLN, BUS), predicted(("perp", "GUERRILLAS"), ("target", "TRUCK")))
    assert counts == {"perp": (0, 1, 1), "target": (0, 1, 1)}
    metrics = filler_metrics(
        [example(FMLN, BUS), example(FMLN)],
        [predicted(("perp", "FMLN"), ("target", "TRUCK")), predicted(("perp", "GUERRILLAS"), ("target", "BUS"))],
        ["perp", "target"],
    )
    # perp: 1 found of 2 gold, 2 predicted; target: 0 found of 1 gold, 2 predicted (one is another role's miss).
    assert metrics["per_filler_role"]["perp"]["precision"] == pytest.approx(0.5)
    assert metrics["per_filler_role"]["perp"]["recall"] == pytest.approx(0.5)
    assert metrics["per_filler_role"]["target"]["f1"] == 0.0
    assert metrics["filler_precision"] == pytest.approx(1 / 4) and metrics["filler_recall"] == pytest.approx(1 / 3)
    assert metrics["filler_examples"] == 2


def test_a_string_in_the_wrong_role_does_not_find_the_entity():
    assert filler_counts(example(FMLN), predicted(("target", "FMLN"))) == {"perp": (0, 0, 1), "target": (0, 1, 0)}


def test_sentence_level_corpora_get_no_filler_keys():
    plain = EventExample("s", TEXT, event=None, actors=[])
    assert filler_metrics([plain], [predicted()], ["perp"]) == {}


def test_the_bootstrap_counts_give_the_same_filler_f1_as_the_metric():
    examples = [example(FMLN, BUS), example(FMLN), example(BUS)]
    predictions = [predicted(("perp", "FMLN")), predicted(("perp", "GUERRILLAS")), predicted(("target", "BUS"), ("target", "TRUCK"))]
    counts = SentenceCounts.of(examples, predictions, SCHEMA)
    expected = filler_metrics(examples, predictions, SCHEMA.role_tags)["filler_f1"]
    assert float(counts.metric(counts.rows.sum(0), "filler_f1")) == pytest.approx(expected)


# --- windows ---------------------------------------------------------------------------------------
LONG = " ".join(f"In village {i} the FMLN burned a bus." for i in range(30))


def long_example() -> EventExample:
    spans = []
    for word, role in (("FMLN", "perp"), ("bus", "target")):
        start = -1
        while (start := LONG.find(word, start + 1)) != -1:
            spans.append(ActorSpan(role, start, start + len(word)))
    return EventExample("long", LONG, event="no_event_layer", actors=sorted(spans, key=lambda s: s.char_start))


def test_a_long_example_trains_as_windows_carrying_every_actor_and_the_event_label_once(tiny_encoder_dir):
    loaded = load_joint_model_from(tiny_encoder_dir)
    features = encode_examples([long_example()], loaded.tokenizer, SCHEMA, max_length=32, window_overlap=8)
    assert len(features) > 5 and all(len(f) <= 32 for f in features)
    assert features[0].event_target == 0 and all(f.event_target == IGNORE_INDEX for f in features[1:])
    b_perp = SCHEMA.bio_index("B-perp")
    # Every FMLN occurrence starts a span in some window (30 of them), none is lost to truncation.
    starts = sum(f.role_labels.count(b_perp) for f in features)
    assert starts >= 30


def test_a_long_example_without_an_actor_layer_is_one_feature_as_before(tiny_encoder_dir):
    loaded = load_joint_model_from(tiny_encoder_dir)
    plain = EventExample("long", LONG, event="no_event_layer", actors=None)
    assert len(encode_examples([plain], loaded.tokenizer, SCHEMA, max_length=32)) == 1


def test_windows_tile_a_long_text_and_predictions_keep_text_offsets(tiny_encoder_dir):
    loaded = load_joint_model_from(tiny_encoder_dir, max_length=32)
    windows = text_windows(loaded.tokenizer, LONG, window_size(loaded), 8)
    assert len(windows) > 5 and windows[0].own_start == 0 and windows[-1].own_end == len(LONG)
    assert all(a.own_end == b.own_start and b.char_start < a.char_end for a, b in zip(windows, windows[1:]))
    (whole,) = predict_windowed(loaded, [LONG], window_overlap=8)
    (truncated,) = predict_texts(loaded, [LONG])
    assert max((s.char_end for s in truncated.actors), default=0) <= windows[0].char_end
    ends = [span.char_end for span in whole.actors]
    assert all(0 <= s.char_start < s.char_end <= len(LONG) for s in whole.actors)
    assert all(a.char_end <= b.char_start for a, b in zip(whole.actors, whole.actors[1:]))
    assert ends == sorted(ends)


def load_joint_model_from(encoder_dir, max_length: int = 32):
    from conflict_events.model import HeadSettings, build_joint_model

    return build_joint_model(str(encoder_dir), SCHEMA, HeadSettings(max_length=max_length))


# --- end to end ------------------------------------------------------------------------------------
def test_a_muc4_corpus_trains_on_windows_and_is_scored_by_filler(tiny_encoder_dir, tmp_path, mlflow_tracking):
    data = tmp_path / "data"
    data.mkdir()
    documents = {
        f"DOC-{i}": {
            "doc": f"Report {i}. " + " ".join(f"In town {j} the {'FMLN' if i % 2 else 'ELN'} attacked a {'bus' if j % 2 else 'bridge'}." for j in range(12)),
            "roles": {"perp": [["FMLN" if i % 2 else "ELN"]], "target": [["BUS"], ["BRIDGE"]]},
        }
        for i in range(12)
    }
    (data / "train.json").write_text(json.dumps(dict(list(documents.items())[:9])))
    (data / "dev.json").write_text(json.dumps(dict(list(documents.items())[9:])))
    config = tiny_config(
        data, tiny_encoder_dir, tmp_path / "ckpt",
        data={"train": {"fillers": "train.json"}, "dev": {"fillers": "dev.json"}},
        labels={"event_classes": [{"code": 0, "name": "no_event_layer"}],
                "actor_roles": [{"tag": "perp", "name": "perpetrator"}, {"tag": "target", "name": "target"}]},
        training={"epochs": 1, "selection_metric": "filler_f1"},
        tracking={"register_model": False},
    )
    result = train(config, show_progress=False)
    metrics = result.dev_metrics
    assert metrics["filler_examples"] == 3 and set(metrics["per_filler_role"]) == {"perp", "target"}
    assert 0.0 <= metrics["filler_f1"] <= 1.0 and metrics["selection_score"] == metrics["filler_f1"]
    assert metrics["event_examples"] == 0
    loaded = load_joint_model(result.best_model_dir)
    assert loaded.label_schema.role_tags == ["perp", "target"]
