"""The promotion gate: a new registered version becomes ``champion`` only on evidence from the same data.

After training, the candidate and the current champion are scored **in this process, on the same
evaluation set** (``evaluation:``, see ``evaluation_data.py``), **with the same backend**
(``inference.backend``). The difference of the promotion metric gets a paired bootstrap interval over
sentences (both models' predictions on the same resampled sentences); the policy in
``evaluation.promotion`` decides:

- the candidate trained on evaluation sentences: refused (challenger), the overlap listed;
- no champion yet: champion;
- the champion cannot be scored on this set (other labels, it cannot be loaded): challenger, with why;
- else champion when ``gain >= min_gain``, the evidence holds (``ci_lower_above_zero``: the interval's
  lower end above 0; ``mean_above_zero``: the gain above 0), and no event class or role loses more F1 than
  ``max_class_drop``; challenger otherwise.

Sentences the champion trained on are left out of the comparison (it would be scored on its own training
data); the decision records how many, and the digest of the set actually used.

The decision (both scores, the interval, the evaluation set's digest, the policy, the reason) goes on the
model version as tags and a short model card (its description), into the run as ``registry/decision.json``
and tags, and is printed.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from conflict_events import tracking
from conflict_events.backends import BackendChoice, apply_backend, resolve_backend
from conflict_events.config import BootstrapConfig, Config, PromotionConfig
from conflict_events.errors import ConflictEventsError
from conflict_events.labels import LabelSchema
from conflict_events.model import LoadedModel, load_joint_model
from conflict_events.prediction import TextPrediction
from conflict_events.schema import EventExample
from conflict_events.training.evaluate import evaluate_loaded
from conflict_events.training.evaluation_data import (
    EvaluationSet,
    describe_overlap,
    overlapping,
    read_trained_on,
)
from conflict_events.training.fillers import filler_counts
from conflict_events.training.metrics import as_label_set, selection_score, span_tuples

logger = logging.getLogger(__name__)


# --- per-sentence counts and the paired bootstrap -----------------------------------------------------
@dataclass(frozen=True)
class SentenceCounts:
    """One row per sentence: for every event class its true positives, predictions and gold labels, then
    the same for every actor role (spans), then for every role again (document-level fillers,
    :mod:`.fillers`), then whether the sentence has an event label, an actor layer and fillers. Any
    corpus-level metric of ``training/metrics.py`` is a function of the column sums, so a resample of
    sentences is a weighted sum of rows."""

    rows: np.ndarray
    classes: int
    roles: int

    @classmethod
    def of(cls, examples: Sequence[EventExample], predictions: Sequence[TextPrediction], schema: LabelSchema) -> "SentenceCounts":
        names, roles = list(schema.event_names), list(schema.role_tags)
        actor_base, filler_base = 3 * len(names), 3 * len(names) + 3 * len(roles)
        rows = np.zeros((len(examples), filler_base + 3 * len(roles) + 3))
        for row, (example, prediction) in enumerate(zip(examples, predictions, strict=True)):
            if example.event is not None:
                gold, predicted = as_label_set(example.event), set(prediction.events)
                for i, name in enumerate(names):
                    rows[row, 3 * i : 3 * i + 3] = (name in gold and name in predicted, name in predicted, name in gold)
                rows[row, -3] = 1
            if example.actors is not None:
                gold_spans, predicted_spans = span_tuples(example.actors), span_tuples(prediction.actors)
                for j, role in enumerate(roles):
                    rows[row, actor_base + 3 * j : actor_base + 3 * j + 3] = (
                        sum(1 for span in gold_spans & predicted_spans if span[0] == role),
                        sum(1 for span in predicted_spans if span[0] == role),
                        sum(1 for span in gold_spans if span[0] == role),
                    )
                rows[row, -2] = 1
            if example.fillers is not None:
                counts = filler_counts(example, prediction)
                for j, role in enumerate(roles):
                    rows[row, filler_base + 3 * j : filler_base + 3 * j + 3] = counts.get(role, (0, 0, 0))
                rows[row, -1] = 1
        return cls(rows, len(names), len(roles))

    def metric(self, totals: np.ndarray, name: str) -> np.ndarray:
        """``name`` (``event_macro_f1``, ``actor_f1``, ``filler_f1`` or ``mean_f1``) from column sums ``(..., width)``."""
        event = self._event_macro_f1(totals)
        actor = self._micro_f1(totals, 3 * self.classes, -2)
        if name == "event_macro_f1":
            return np.nan_to_num(event)
        if name == "actor_f1":
            return np.nan_to_num(actor)
        if name == "filler_f1":
            return np.nan_to_num(self._micro_f1(totals, 3 * self.classes + 3 * self.roles, -1))
        # mean_f1: the mean over the layers that can be measured, as selection_score does.
        stacked = np.stack([event, actor])
        measured = (~np.isnan(stacked)).sum(0)
        return np.where(measured > 0, np.nansum(stacked, axis=0) / np.maximum(measured, 1), 0.0)

    def _event_macro_f1(self, totals: np.ndarray) -> np.ndarray:
        counts = totals[..., : 3 * self.classes].reshape(*totals.shape[:-1], self.classes, 3)
        tp, predicted, gold = counts[..., 0], counts[..., 1], counts[..., 2]
        f1 = _f1(tp, predicted, gold)
        present = (predicted + gold) > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            macro = (f1 * present).sum(-1) / present.sum(-1)
        return np.where(totals[..., -3] > 0, macro, np.nan)

    def _micro_f1(self, totals: np.ndarray, base: int, flag: int) -> np.ndarray:
        """Micro F1 over the roles of the block of role counts at ``base`` (spans or fillers)."""
        if not self.roles:
            return np.full(totals.shape[:-1], np.nan)
        counts = totals[..., base : base + 3 * self.roles].reshape(*totals.shape[:-1], self.roles, 3)
        micro = counts.sum(-2)
        return np.where(totals[..., flag] > 0, _f1(micro[..., 0], micro[..., 1], micro[..., 2]), np.nan)


def _f1(tp: np.ndarray, predicted: np.ndarray, gold: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(gold > 0, tp / gold, 0.0)
        return np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)


@dataclass(frozen=True)
class Interval:
    """The candidate's score minus the champion's, with a percentile bootstrap interval."""

    difference: float
    low: float
    high: float
    level: float
    resamples: int

    def __str__(self) -> str:
        return f"{self.difference:+.4f} [{self.low:+.4f}, {self.high:+.4f}] ({self.level:.0%} paired bootstrap, {self.resamples} resamples)"


def paired_bootstrap(candidate: SentenceCounts, champion: SentenceCounts, metric: str, settings: BootstrapConfig) -> Interval:
    """Resample sentences with replacement (the same draw for both models) ``settings.resamples`` times.

    Kept by hand: ``scipy.stats.bootstrap(paired=True, method="percentile")`` draws the same resamples from
    the same seed but interpolates its percentiles differently in the last bits (up to 1.5e-15) and keeps
    its draw order an implementation detail, so a recorded interval (and a ``ci_lower_above_zero`` decision
    at exactly 0) would depend on the scipy release (``sklearn.utils.resample``, one ``RandomState`` draw per
    call, would change every interval); ``tests/test_promotion.py`` checks ours against scipy's."""
    count = candidate.rows.shape[0]
    point = float(candidate.metric(candidate.rows.sum(0), metric) - champion.metric(champion.rows.sum(0), metric))
    if count == 0:
        return Interval(point, point, point, settings.level, 0)
    rng = np.random.default_rng(settings.seed)
    draws = rng.integers(0, count, size=(settings.resamples, count))
    weights = np.zeros((settings.resamples, count))
    np.add.at(weights, (np.arange(settings.resamples)[:, None], draws), 1.0)
    differences = candidate.metric(weights @ candidate.rows, metric) - champion.metric(weights @ champion.rows, metric)
    tail = (1 - settings.level) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    return Interval(point, float(low), float(high), settings.level, settings.resamples)


# --- scoring both models --------------------------------------------------------------------------
@dataclass(frozen=True)
class Scored:
    """A model's predictions and metrics on an evaluation set."""

    metrics: dict
    counts: SentenceCounts
    predictions: tuple[TextPrediction, ...]


def score_model(loaded: LoadedModel, evaluation: EvaluationSet, config: Config) -> Scored:
    examples = list(evaluation.examples)
    metrics, predictions = evaluate_loaded(
        loaded, examples, config.training.eval_batch_size, config.training.selection_metric, config.inference.window_overlap
    )
    return Scored(metrics, SentenceCounts.of(examples, predictions, loaded.label_schema), tuple(predictions))


def f1_deltas(first: dict, second: dict) -> dict[str, float]:
    """F1 of ``second`` minus ``first`` per event class (``class:<name>``), actor role (``role:<tag>``) and
    filler role (``filler:<tag>``, document-level corpora) that has gold examples."""
    deltas = {}
    for prefix, key in (("class", "per_class"), ("role", "per_role"), ("filler", "per_filler_role")):
        for name, values in first.get(key, {}).items():
            other = second.get(key, {}).get(name)
            if other is not None and values["support"]:
                deltas[f"{prefix}:{name}"] = other["f1"] - values["f1"]
    return deltas


def class_drops(candidate: dict, champion: dict) -> dict[str, float]:
    """F1 lost per event class and actor role, where the candidate is worse than the champion."""
    return {key: -delta for key, delta in f1_deltas(champion, candidate).items() if delta < 0}


# --- the decision ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromotionDecision:
    registered_model: str
    version: str
    alias: str  # champion | challenger
    reason: str
    metric: str
    evaluation: dict  # name, description, digest, sentences
    policy: dict
    candidate_score: float | None = None
    champion_version: str | None = None
    champion_score: float | None = None
    interval: Interval | None = None
    class_drops: dict[str, float] = field(default_factory=dict)
    backend: str = ""

    @property
    def promoted(self) -> bool:
        return self.alias == tracking.CHAMPION

    def summary(self) -> str:
        scores = "" if self.candidate_score is None else f"new {self.candidate_score:.4f}"
        if self.champion_score is not None:
            scores += f", champion v{self.champion_version} {self.champion_score:.4f}"
        interval = "" if self.interval is None else f", difference {self.interval}"
        evaluation = f"on {self.evaluation['name']} {self.evaluation['digest']} ({self.evaluation['sentences']} sentences)"
        return f"{self.registered_model} v{self.version} -> {self.alias} ({self.metric} {evaluation}: {scores}{interval}; {self.reason})"

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["promoted"] = self.promoted
        return data

    def tags(self) -> dict[str, str]:
        """Flat tags for the model version and the run."""
        flat = {
            "alias": self.alias, "reason": self.reason, "metric": self.metric, "backend": self.backend,
            "candidate_score": self.candidate_score, "champion_version": self.champion_version,
            "champion_score": self.champion_score,
            "evaluation.name": self.evaluation["name"], "evaluation.digest": self.evaluation["digest"],
            "evaluation.sentences": self.evaluation["sentences"],
        }
        if self.interval is not None:
            flat.update({"difference": self.interval.difference, "ci_low": self.interval.low, "ci_high": self.interval.high})
        return {f"promotion.{key}": "" if value is None else str(value) for key, value in flat.items()}

    def model_card(self) -> str:
        """The version's description: what it is and why it holds its alias."""
        lines = [
            f"At registration: **{self.alias}**, {self.reason} (later alias moves: `conflict-events models list` and "
            "the registered model's tag `alias_history`).",
            "",
            f"Evaluation set: {self.evaluation['name']} ({self.evaluation['description']}), "
            f"{self.evaluation['sentences']} sentences, digest `{self.evaluation['digest']}`; backend `{self.backend}`.",
        ]
        if self.candidate_score is not None:
            lines.append(f"{self.metric}: this version {self.candidate_score:.4f}"
                         + ("" if self.champion_score is None else f", champion v{self.champion_version} {self.champion_score:.4f}"))
        if self.interval is not None:
            lines.append(f"Difference: {self.interval}.")
        if self.class_drops:
            lines.append("F1 lost against the champion: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(self.class_drops.items())))
        lines.append(f"Policy: {self.policy}.")
        return "\n".join(lines)


class ChampionUnavailable(ConflictEventsError):
    """The current champion cannot be scored on this evaluation set."""


def _load_champion(name: str, version: str, schema: LabelSchema, backend: BackendChoice) -> LoadedModel:
    try:
        champion = load_joint_model(f"models:/{name}/{version}")
    except ConflictEventsError as error:
        raise ChampionUnavailable(f"the champion v{version} cannot be loaded ({error})") from None
    if champion.label_schema.to_json() != schema.to_json():
        raise ChampionUnavailable(f"the champion v{version} has other labels than this evaluation set's config")
    return apply_backend(champion, backend)


def decide(
    config: Config,
    candidate: LoadedModel,
    version: str,
    evaluation: EvaluationSet,
    champion_version: str | None,
) -> PromotionDecision:
    """Score candidate and champion on ``evaluation`` and apply ``evaluation.promotion``; changes nothing."""
    policy: PromotionConfig = config.evaluation.promotion
    metric = policy.metric or config.training.selection_metric
    # Recorded as what ran on this machine (`auto` and `bf16` resolve per CPU), both models the same.
    backend = resolve_backend(config.inference.backend)
    name = config.tracking.registered_model
    base = {
        "registered_model": name, "version": version, "metric": metric, "backend": backend.name,
        "policy": policy.model_dump(mode="json") | {"metric": metric, "bootstrap": config.evaluation.bootstrap.model_dump()},
    }

    def evaluated(on: EvaluationSet) -> dict:
        return {"name": on.name, "description": on.description, "digest": on.digest, "sentences": len(on.examples)}

    leaked = overlapping(evaluation.examples, read_trained_on(candidate.directory))
    if leaked:
        reason = f"refused: trained on {describe_overlap(leaked, len(evaluation.examples))} of the evaluation set"
        return PromotionDecision(alias=tracking.CHALLENGER, reason=reason, evaluation=evaluated(evaluation), **base)
    scored_candidate = apply_backend(candidate, backend)
    if champion_version is None or champion_version == version:
        own = score_model(scored_candidate, evaluation, config)
        return PromotionDecision(
            alias=tracking.CHAMPION, reason="no champion yet", evaluation=evaluated(evaluation),
            candidate_score=selection_score(own.metrics, metric), **base,
        )
    try:
        champion = _load_champion(name, champion_version, candidate.label_schema, backend)
    except ChampionUnavailable as error:
        return PromotionDecision(
            alias=tracking.CHALLENGER, reason=f"not compared: {error}", evaluation=evaluated(evaluation),
            champion_version=champion_version, **base,
        )
    champion_trained_on = read_trained_on(champion.directory) or set()
    fair = evaluation.without(champion_trained_on, "sentences the champion trained on")
    ours, theirs = score_model(scored_candidate, fair, config), score_model(champion, fair, config)
    interval = paired_bootstrap(ours.counts, theirs.counts, metric, config.evaluation.bootstrap)
    drops = class_drops(ours.metrics, theirs.metrics)
    alias, reason = _verdict(policy, interval, drops)
    return PromotionDecision(
        alias=alias, reason=reason, evaluation=evaluated(fair), candidate_score=selection_score(ours.metrics, metric),
        champion_version=champion_version, champion_score=selection_score(theirs.metrics, metric), interval=interval,
        class_drops=drops, **base,
    )


def _verdict(policy: PromotionConfig, interval: Interval, drops: dict[str, float]) -> tuple[str, str]:
    if interval.difference < policy.min_gain or interval.difference <= 0:
        return tracking.CHALLENGER, f"not better than the champion by the required {policy.min_gain:.4f}"
    if policy.require == "ci_lower_above_zero" and interval.low <= 0:
        return tracking.CHALLENGER, "better, but the interval of the difference reaches zero (not enough evidence)"
    too_large = {key: drop for key, drop in drops.items() if policy.max_class_drop is not None and drop > policy.max_class_drop}
    if too_large:
        worst = max(too_large, key=lambda key: too_large[key])
        return tracking.CHALLENGER, f"better overall, but {worst} loses {too_large[worst]:.3f} F1 (max_class_drop {policy.max_class_drop})"
    return tracking.CHAMPION, "better than the champion on the same evaluation set"


def gate(config: Config, model_dir: Path, version: str, evaluation: EvaluationSet) -> PromotionDecision:
    """Decide for the freshly registered ``version`` (saved at ``model_dir``) and apply the decision to the
    registry: aliases, version tags and description, and the alias history."""
    name = config.tracking.registered_model
    current = tracking.champion_version(name)
    decision = decide(config, load_joint_model(model_dir), version, evaluation, None if current is None else str(current.version))
    tracking.set_version_alias(name, version, decision.alias, decision.reason)
    tracking.describe_version(name, version, decision.model_card(), decision.tags())
    logger.info("registry: %s", decision.summary())
    return decision


# --- comparing two registered models (``conflict-events models compare``) ------------------------------
COMPARED_METRICS = ("event_macro_f1", "actor_f1", "mean_f1")


@dataclass(frozen=True)
class Comparison:
    first: str
    second: str
    evaluation: EvaluationSet
    backend: str
    metrics: tuple[dict, dict]
    intervals: dict[str, Interval]  # metric -> second minus first
    deltas: dict[str, float]  # class:<name> / role:<tag> -> F1 of second minus first
    disagreements: list[dict]

    def lines(self, shown: int = 15) -> list[str]:
        first, second = self.metrics
        rows = [f"evaluation set: {self.evaluation.summary()}; backend {self.backend}",
                f"A = {self.first}, B = {self.second}",
                f"{'metric':<18}{'A':>10}{'B':>10}  B - A"]
        names = ("event_accuracy", "event_macro_f1", "actor_precision", "actor_recall", "actor_f1", "mean_f1")
        for name in names + (("filler_f1",) if "filler_f1" in first else ()):
            a, b = _value(first, name), _value(second, name)
            interval = self.intervals.get(name)
            difference = str(interval) if interval is not None else ("" if a is None or b is None else f"{b - a:+.4f}")
            rows.append(f"{name:<18}{_show(a):>10}{_show(b):>10}  {difference}")
        rows.append("F1 per class and role, B - A: " + ", ".join(f"{key} {delta:+.4f}" for key, delta in sorted(self.deltas.items())))
        rows.append(f"sentences where they disagree: {len(self.disagreements)} of {len(self.evaluation.examples)}"
                    + (f" (first {min(shown, len(self.disagreements))}: id: A | B | gold)" if shown and self.disagreements else ""))
        for row in self.disagreements[:shown]:
            rows.append(f"  {row['id']}: {row['first']} | {row['second']} | gold {row['gold']}")
        return rows


def _value(metrics: dict, name: str) -> float | None:
    return selection_score(metrics, "mean_f1") if name == "mean_f1" else metrics.get(name)


def _show(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _prediction_text(example: EventExample, prediction: TextPrediction) -> str:
    spans = ", ".join(f"{role}:{example.text[start:end]}" for role, start, end in sorted(span_tuples(prediction.actors), key=lambda s: s[1]))
    return f"{'|'.join(prediction.events) or '-'} [{spans}]"


def compare_models(config: Config, first: str, second: str, evaluation: EvaluationSet) -> Comparison:
    """Both models scored on ``evaluation`` with the config's backend, every metric with its paired interval."""
    backend = resolve_backend(config.inference.backend)
    models = [apply_backend(load_joint_model(uri), backend) for uri in (first, second)]
    if models[0].label_schema.to_json() != models[1].label_schema.to_json():
        raise ChampionUnavailable(f"{first} and {second} have different labels; they cannot be scored on one set")
    scored = [score_model(model, evaluation, config) for model in models]
    compared = COMPARED_METRICS + (("filler_f1",) if "filler_f1" in scored[0].metrics else ())
    intervals = {
        name: paired_bootstrap(scored[1].counts, scored[0].counts, name, config.evaluation.bootstrap) for name in compared
    }
    deltas = {key: delta for key, delta in f1_deltas(scored[0].metrics, scored[1].metrics).items() if delta}
    disagreements = []
    for example, a, b in zip(evaluation.examples, scored[0].predictions, scored[1].predictions):
        if a.events != b.events or span_tuples(a.actors) != span_tuples(b.actors):
            gold_event = example.event if isinstance(example.event, str) or example.event is None else "|".join(sorted(example.event))
            gold_spans = ", ".join(f"{s.role}:{example.text[s.char_start:s.char_end]}" for s in example.actors or [])
            disagreements.append({
                "id": example.id, "text": example.text, "first": _prediction_text(example, a),
                "second": _prediction_text(example, b), "gold": f"{gold_event or '-'} [{gold_spans}]",
            })
    return Comparison(
        first, second, evaluation, backend.name, (scored[0].metrics, scored[1].metrics), intervals, deltas, disagreements
    )


def log_comparison(config: Config, comparison: Comparison) -> str:
    """The comparison as an MLflow evaluation run (metrics of both, intervals, the disagreement table)."""
    name = f"compare {comparison.first} vs {comparison.second}"
    with tracking.start_training_run(config.tracking.experiment, run_name=name) as run:
        tracking.set_tags({"run.kind": "compare", "evaluation.digest": comparison.evaluation.digest,
                           "evaluation.name": comparison.evaluation.name, "compare.first": comparison.first,
                           "compare.second": comparison.second, "backend": comparison.backend})
        tracking.log_evaluation(comparison.metrics[0], prefix="first_")
        tracking.log_evaluation(comparison.metrics[1], prefix="second_")
        for metric, interval in comparison.intervals.items():
            tracking.log_metrics({f"diff_{metric}": interval.difference, f"diff_{metric}_ci_low": interval.low,
                                  f"diff_{metric}_ci_high": interval.high})
        if comparison.disagreements:
            tracking.log_table(comparison.disagreements, "compare/disagreements.json")
        tracking.log_text("\n".join(comparison.lines(shown=10_000)) + "\n", "compare/summary.txt")
        return run.info.run_id
