"""Retraining an ML engineer can trust: champion and challenger judged on the same frozen evaluation data
(training/promotion.py, training/evaluation_data.py)."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from conflict_events import tracking
from conflict_events.cli import app
from conflict_events.config import BootstrapConfig, PromotionConfig
from conflict_events.labels import ActorRole, EventClass, LabelSchema
from conflict_events.prediction import PredictedSpan, TextPrediction
from conflict_events.schema import ActorSpan, EventExample
from conflict_events.training.evaluation_data import EvaluationSet, set_digest
from conflict_events.training.metrics import event_metrics, selection_score, span_metrics
from conflict_events.training.promotion import Interval, SentenceCounts, _verdict, paired_bootstrap
from conflict_events.training.testing import tiny_config_mapping, tiny_examples
from conflict_events.training.trainer import train
from conflict_events.config import config_from_mapping

SCHEMA = LabelSchema(
    event_classes=(EventClass(0, "calm"), EventClass(1, "fight")),
    actor_roles=(ActorRole("S", "source"),),
)
runner = CliRunner()


def example(index: int, event: str) -> EventExample:
    return EventExample(f"e{index}", f"Sentence number {index}.", event=event, actors=[ActorSpan("S", 0, 8)])


def prediction(event: str, actor_ok: bool) -> TextPrediction:
    actors = (PredictedSpan("S", 0, 8 if actor_ok else 5, 0.9),)
    return TextPrediction(event_scores=np.zeros(2), events=(event,), actors=actors)


EXAMPLES = [example(i, "fight" if i % 2 else "calm") for i in range(8)]


def test_the_bootstrap_of_identical_models_is_exactly_zero():
    predictions = [prediction(e.event, i % 3 == 0) for i, e in enumerate(EXAMPLES)]
    counts = SentenceCounts.of(EXAMPLES, predictions, SCHEMA)
    interval = paired_bootstrap(counts, counts, "mean_f1", BootstrapConfig(resamples=200))
    assert (interval.difference, interval.low, interval.high) == (0.0, 0.0, 0.0)


def test_a_model_right_everywhere_against_one_wrong_everywhere_differs_by_one_in_every_resample():
    right = SentenceCounts.of(EXAMPLES, [prediction(e.event, True) for e in EXAMPLES], SCHEMA)
    flipped = {"calm": "fight", "fight": "calm"}
    wrong = SentenceCounts.of(EXAMPLES, [prediction(flipped[e.event], False) for e in EXAMPLES], SCHEMA)
    interval = paired_bootstrap(right, wrong, "mean_f1", BootstrapConfig(resamples=300))
    assert (interval.difference, interval.low, interval.high) == (1.0, 1.0, 1.0)
    assert paired_bootstrap(wrong, right, "event_macro_f1", BootstrapConfig(resamples=300)).high == -1.0


def test_a_resample_scores_exactly_what_the_metrics_module_gives_on_the_resampled_sentences():
    rng = np.random.default_rng(5)
    predictions = [prediction(str(rng.choice(["calm", "fight"])), bool(rng.random() < 0.6)) for _ in EXAMPLES]
    counts = SentenceCounts.of(EXAMPLES, predictions, SCHEMA)
    for _ in range(20):
        draw = rng.integers(0, len(EXAMPLES), len(EXAMPLES))
        chosen = [EXAMPLES[i] for i in draw]
        picked = [predictions[i] for i in draw]
        expected = event_metrics([e.event for e in chosen], [p.events for p in picked], SCHEMA.event_names)
        expected.update(span_metrics([e.actors for e in chosen], [p.actors for p in picked], SCHEMA.role_tags))
        totals = counts.rows[draw].sum(0)
        assert counts.metric(totals, "event_macro_f1") == pytest.approx(expected["event_macro_f1"])
        assert counts.metric(totals, "actor_f1") == pytest.approx(expected["actor_f1"])
        assert counts.metric(totals, "mean_f1") == pytest.approx(selection_score(expected, "mean_f1"))


def test_the_interval_is_scipys_paired_percentile_bootstrap_up_to_rounding():
    # paired_bootstrap stays hand-written (see its docstring); scipy's routine is the reference it must match.
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(8)
    examples = [example(i, "fight" if i % 3 else "calm") for i in range(30)]
    candidate, champion = (
        SentenceCounts.of(
            examples, [prediction(str(rng.choice(["calm", "fight"])), bool(rng.random() < p)) for _ in examples], SCHEMA
        )
        for p in (0.7, 0.5)
    )
    for metric in ("mean_f1", "event_macro_f1", "actor_f1"):
        settings = BootstrapConfig(resamples=500, level=0.9, seed=3)
        ours = paired_bootstrap(candidate, champion, metric, settings)

        def difference(indices, axis=-1, metric=metric):
            weights = np.zeros((indices.shape[0], len(examples)))
            np.add.at(weights, (np.arange(indices.shape[0])[:, None], indices), 1.0)
            return candidate.metric(weights @ candidate.rows, metric) - champion.metric(weights @ champion.rows, metric)

        reference = stats.bootstrap(
            (np.arange(len(examples)),), difference, n_resamples=500, vectorized=True, paired=True,
            confidence_level=0.9, method="percentile", random_state=np.random.default_rng(3),
        ).confidence_interval
        assert ours.low == pytest.approx(reference.low, abs=1e-12), metric
        assert ours.high == pytest.approx(reference.high, abs=1e-12), metric
        assert ours.low < ours.high, metric  # not a degenerate case


def test_the_policy_needs_the_gain_the_evidence_and_no_class_collapsing():
    policy = PromotionConfig(min_gain=0.01, require="ci_lower_above_zero", max_class_drop=0.05)
    assert _verdict(policy, Interval(0.005, 0.001, 0.01, 0.95, 100), {})[0] == "challenger"
    assert "reaches zero" in _verdict(policy, Interval(0.03, -0.01, 0.07, 0.95, 100), {})[1]
    alias, reason = _verdict(policy, Interval(0.03, 0.01, 0.05, 0.95, 100), {"role:T": 0.08})
    assert (alias, reason) == ("challenger", "better overall, but role:T loses 0.080 F1 (max_class_drop 0.05)")
    assert _verdict(policy, Interval(0.03, 0.01, 0.05, 0.95, 100), {"role:T": 0.01})[0] == "champion"
    lenient = PromotionConfig(min_gain=0.0, require="mean_above_zero", max_class_drop=None)
    assert _verdict(lenient, Interval(0.03, -0.01, 0.07, 0.95, 100), {"role:T": 0.5})[0] == "champion"


def test_an_evaluation_sets_digest_depends_on_its_examples_and_labels_not_their_order():
    assert set_digest(EXAMPLES) == set_digest(list(reversed(EXAMPLES)))
    relabelled = [example(0, "fight"), *EXAMPLES[1:]]
    assert set_digest(relabelled) != set_digest(EXAMPLES)
    assert EvaluationSet.of("dev", "d", EXAMPLES).without(set(), "x").digest == set_digest(EXAMPLES)


# --- the retraining story, end to end on the tiny model -----------------------------------------------
HELDOUT_ACTORS = ["Militants", "Soldiers", "Riot police", "The ministry", "Students", "Mediators"]


def heldout_records(count: int = 20) -> list[dict]:
    """Sentences of the training templates with actors the training corpus never names."""
    return tiny_examples(count, actors=HELDOUT_ACTORS, prefix="held", every_layer=True)


@pytest.fixture()
def story(tmp_path, tiny_encoder_dir, mlflow_tracking):
    data = tmp_path / "data"
    data.mkdir()
    (data / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tiny_examples(40)))
    (data / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in heldout_records()))

    def config(**training):
        mapping = tiny_config_mapping(data, tiny_encoder_dir, tmp_path / f"ckpt-{len(list(tmp_path.iterdir()))}")
        mapping["training"].update(epochs=3, **training)
        mapping["evaluation"] = {"split": "file", "files": {"jsonl": "heldout.jsonl"}, "bootstrap": {"resamples": 200},
                                 "promotion": {"require": "mean_above_zero"}}
        return mapping

    return data, config


def test_champion_and_candidate_are_judged_on_the_frozen_set_not_their_own_dev_splits(story):
    data, config = story
    first = train(config_from_mapping(config(), source="v1"), show_progress=False)
    assert (first.alias_decision.alias, first.alias_decision.reason) == ("champion", "no champion yet")
    frozen = first.alias_decision.evaluation["digest"]

    # Retrained on another dev split (part of v1's dev is now training data), but learning nothing: its
    # own dev score is not comparable, and the gate never looks at it.
    worse = config(learning_rate=1e-12)
    worse["data"]["dev_split"] = {"fraction": 0.1, "seed": 7}
    second = train(config_from_mapping(worse, source="v2"), show_progress=False)
    decision = second.alias_decision
    assert decision.alias == "challenger"
    assert decision.evaluation["digest"] == frozen and decision.champion_version == "1"
    assert decision.candidate_score < decision.champion_score
    assert decision.interval is not None and decision.interval.difference < 0
    assert str(mlflow.MlflowClient().get_model_version_by_alias("tiny-model", "champion").version) == "1"

    version = mlflow.MlflowClient().get_model_version("tiny-model", "2")
    assert version.tags["promotion.evaluation.digest"] == frozen
    assert version.description.startswith("At registration: **challenger**, not better than the champion")
    run = mlflow.get_run(second.run_id)
    assert run.data.tags["evaluation.digest"] == frozen
    assert {"eval_event_macro_f1", "dev_f1.class.neutral", "dev_f1.role.S"} <= set(run.data.metrics)
    assert "dev_examples" not in run.data.metrics and run.data.tags["dev_examples"]
    assert {dataset.dataset.name for dataset in run.inputs.dataset_inputs} == {"train", "dev", "evaluation"}
    decision_file = json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/registry/decision.json"))
    assert decision_file["alias"] == "challenger" and decision_file["evaluation"]["digest"] == frozen


def test_a_candidate_that_trained_on_evaluation_sentences_is_refused_with_them_named(story):
    data, config = story
    train(config_from_mapping(config(), source="v1"), show_progress=False)
    leaky = config()
    with (data / "events.jsonl").open("a") as handle:
        for record in heldout_records()[:3]:
            handle.write(json.dumps({**record, "id": "copy-" + record["id"]}) + "\n")
    decision = train(config_from_mapping(leaky, source="leaky"), show_progress=False).alias_decision
    assert decision.alias == "challenger"
    assert decision.reason.startswith("refused: trained on ")
    assert "of 20 sentences (held-0" in decision.reason


def test_runs_of_one_seed_get_names_of_their_own(story):
    _, config = story
    settings = config_from_mapping(config(), source="v1")
    settings = settings.model_copy(update={"tracking": settings.tracking.model_copy(update={"register_model": False, "log_model": False})})
    names = {mlflow.get_run(train(settings, show_progress=False).run_id).info.run_name for _ in range(2)}
    assert len(names) == 2 and all(name.startswith("tiny-") for name in names)


def test_models_commands_list_compare_promote_and_roll_back(story, tmp_path):
    data, config = story
    path = tmp_path / "story.yaml"
    path.write_text(yaml.safe_dump(config()))
    assert runner.invoke(app, ["train", "--config", str(path), "--no-progress"]).exit_code == 0
    result = runner.invoke(app, ["train", "--config", str(path), "--no-progress", "--no-promote"])
    assert "registry: registered, aliases untouched (--no-promote)" in result.output
    assert {alias: str(v) for alias, v in mlflow.MlflowClient().get_registered_model("tiny-model").aliases.items()} == {"champion": "1"}

    listed = runner.invoke(app, ["models", "list", "--config", str(path)])
    assert listed.exit_code == 0, listed.output
    rows = [line.split()[:2] for line in listed.output.splitlines()[1:]]
    assert rows == [["2", "-"], ["1", "champion"]]

    compared = runner.invoke(app, ["models", "compare", "1", "2", "--config", str(path)])
    assert compared.exit_code == 0, compared.output
    assert "evaluation set: file (heldout.jsonl; 20 sentences, sha256:" in compared.output
    assert "A = models:/tiny-model/1, B = models:/tiny-model/2" in compared.output
    assert "paired bootstrap" in compared.output and "logged as run " in compared.output

    promoted = runner.invoke(app, ["models", "promote", "2", "--reason", "reviewed", "--config", str(path)])
    assert promoted.output.strip() == "tiny-model: champion v1 -> v2 (reviewed)"
    rolled = runner.invoke(app, ["models", "rollback", "--config", str(path)])
    assert rolled.output.strip() == "tiny-model: champion v2 -> v1 (rollback)"
    assert [move["version"] for move in tracking.alias_history("tiny-model")] == ["1", "2", "1"]


def test_scoring_a_model_on_sentences_it_trained_on_warns_with_them_named(tmp_path, caplog):
    from conflict_events.training.evaluation_data import warn_if_trained_on, write_trained_on

    write_trained_on(tmp_path, EXAMPLES[:3])
    with caplog.at_level("WARNING"):
        leaked = warn_if_trained_on("teacher models:/t/1", tmp_path, EXAMPLES, "dev")
    assert [e.id for e in leaked] == ["e0", "e1", "e2"]
    assert "teacher models:/t/1 trained on 3 of 8 sentences (e0, e1, e2) of the dev split" in caplog.text
    assert warn_if_trained_on("old model", tmp_path / "no-record", EXAMPLES, "dev") == []
