"""Evaluation of a joint model on a corpus split, through the shared prediction step
(:func:`conflict_events.prediction.predict_texts`) so the numbers match what inference produces.

The flat keys of the result are ``event_accuracy``, ``event_macro_f1``, ``actor_precision``,
``actor_recall``, ``actor_f1`` (strict span match, micro over roles) and ``selection_score``;
``per_class`` and ``per_role`` hold the breakdowns.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from conflict_events.backends import apply_backend
from conflict_events.config import Config
from conflict_events.labels import LabelSchema
from conflict_events.model import HeadSettings, LoadedModel, load_joint_model
from conflict_events.prediction import TextPrediction, predict_texts
from conflict_events.schema import EventExample
from conflict_events.training.evaluation_data import load_named_set, warn_if_trained_on
from conflict_events.training.metrics import event_metrics, selection_score, span_metrics

THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))


def score_predictions(
    examples: Sequence[EventExample], predictions: Sequence[TextPrediction], schema: LabelSchema
) -> dict:
    """Event and actor metrics of ``predictions`` against the gold labels of ``examples``."""
    metrics = event_metrics([e.event for e in examples], [p.events for p in predictions], schema.event_names)
    metrics.update(span_metrics([e.actors for e in examples], [p.actors for p in predictions], schema.role_tags))
    metrics["examples"] = len(examples)
    return metrics


def with_threshold(predictions: Sequence[TextPrediction], schema: LabelSchema, threshold: float) -> list[TextPrediction]:
    names = schema.event_names
    return [
        dataclasses.replace(p, events=tuple(n for n, s in zip(names, p.event_scores) if s >= threshold))
        for p in predictions
    ]


def tune_threshold(examples: Sequence[EventExample], predictions: Sequence[TextPrediction], schema: LabelSchema) -> float:
    """The multilabel decision threshold from a fixed grid that maximises dev event macro-F1
    (ties go to the threshold closest to 0.5)."""
    gold = [e.event for e in examples]
    best = (-1.0, 0.0, 0.5)
    for threshold in THRESHOLD_GRID:
        events = [p.events for p in with_threshold(predictions, schema, threshold)]
        f1 = event_metrics(gold, events, schema.event_names)["event_macro_f1"] or 0.0
        candidate = (f1, -abs(threshold - 0.5), threshold)
        best = max(best, candidate)
    return best[2]


def evaluate_loaded(
    loaded: LoadedModel,
    examples: Sequence[EventExample],
    batch_size: int = 64,
    selection_metric: str = "mean_f1",
) -> tuple[dict, list[TextPrediction]]:
    """Predict ``examples`` with the model as it is and score them."""
    predictions = predict_texts(loaded, [e.text for e in examples], batch_size=batch_size)
    return _scored(examples, predictions, loaded.label_schema, loaded.settings, selection_metric), predictions


def evaluate_tuning_threshold(
    loaded: LoadedModel,
    examples: Sequence[EventExample],
    batch_size: int = 64,
    selection_metric: str = "mean_f1",
) -> tuple[dict, list[TextPrediction], HeadSettings]:
    """:func:`evaluate_loaded` after tuning the multilabel decision threshold on ``examples``; also returns
    the head settings with that threshold (for a multiclass model, or no examples, the model's own). The
    model is not changed: whoever owns it decides whether to adopt the settings (the trainer does)."""
    schema = loaded.label_schema
    predictions = predict_texts(loaded, [e.text for e in examples], batch_size=batch_size)
    settings = loaded.settings
    if schema.multilabel and examples:
        settings = dataclasses.replace(settings, threshold=tune_threshold(examples, predictions, schema))
        predictions = with_threshold(predictions, schema, settings.threshold)
    return _scored(examples, predictions, schema, settings, selection_metric), predictions, settings


def _scored(
    examples: Sequence[EventExample],
    predictions: Sequence[TextPrediction],
    schema: LabelSchema,
    settings: HeadSettings,
    selection_metric: str,
) -> dict:
    metrics = score_predictions(examples, predictions, schema)
    if schema.multilabel:
        metrics["threshold"] = float(settings.threshold)
    metrics["selection_score"] = selection_score(metrics, selection_metric)
    return metrics


def evaluate(model: str | Path, config: Config, split: str = "test", decoding: str | None = None) -> dict:
    """Metrics of the model at ``model`` (``models:/name@alias``, ``runs:/<id>/model`` or a local
    directory) on ``split`` (``train``, ``dev``, ``test``, or ``file``: ``evaluation.files``) of the corpus
    described by ``config``, computed with the numeric backend ``config.inference.backend`` (so
    ``--set inference.backend=int8`` measures what int8 costs). The result names the examples it was scored
    on by their digest, and a warning says so when the model trained on some of them.

    ``decoding`` (``viterbi`` or ``greedy``) replaces the BIO decoding the model was saved with, to
    measure what constrained decoding is worth on the same weights; ``None`` keeps the model's own."""
    evaluation = load_named_set(config, split)
    loaded = apply_backend(load_joint_model(model), config.inference.backend)
    if decoding is not None:
        loaded = loaded.with_settings(dataclasses.replace(loaded.settings, decoding=decoding))
    examples = list(evaluation.examples)
    leaked = warn_if_trained_on(str(model), loaded.directory, examples, split)
    metrics, _ = evaluate_loaded(
        loaded, examples, batch_size=config.training.eval_batch_size, selection_metric=config.training.selection_metric
    )
    metrics.update(
        {"split": split, "model": str(model), "backend": config.inference.backend, "decoding": loaded.settings.decoding,
         "digest": evaluation.digest, "description": evaluation.description, "trained_on_examples": len(leaked)}
    )
    return metrics


def summary_line(metrics: dict) -> str:
    def show(key: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{value:.4f}"

    multilabel = f"  event micro-F1 {show('event_micro_f1')}  example-F1 {show('event_example_f1')}" if "event_micro_f1" in metrics else ""
    return (
        f"event accuracy {show('event_accuracy')}  event macro-F1 {show('event_macro_f1')}{multilabel}  "
        f"actor P {show('actor_precision')} R {show('actor_recall')} F1 {show('actor_f1')}"
    )


__all__ = [
    "evaluate",
    "evaluate_loaded",
    "evaluate_tuning_threshold",
    "score_predictions",
    "summary_line",
    "tune_threshold",
]
