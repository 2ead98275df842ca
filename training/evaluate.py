"""Evaluation of a joint model on a corpus split, through the shared prediction step
(:func:`conflict_events.prediction.predict_windowed`: long texts windowed as inference windows them) so the
numbers match what inference produces.

The flat keys of the result are ``event_accuracy``, ``event_macro_f1``, ``actor_precision``,
``actor_recall``, ``actor_f1`` (strict span match, micro over roles) and ``selection_score``;
``per_class`` and ``per_role`` hold the breakdowns. Document-level corpora (MUC-4) add
``filler_precision``, ``filler_recall``, ``filler_f1`` and ``per_filler_role`` (:mod:`.fillers`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from conflict_events.backends import apply_backend, resolve_backend
from conflict_events.config import Config, TrainingConfig
from conflict_events.labels import LabelSchema
from conflict_events.model import HeadSettings, LoadedModel, load_joint_model
from conflict_events.prediction import TextPrediction, predict_windowed
from conflict_events.schema import EventExample
from conflict_events.training.fillers import filler_metrics
from conflict_events.training.evaluation_data import load_named_set, warn_if_trained_on
from conflict_events.training.metrics import as_label_set, event_metrics, f1_score, safe_divide, selection_score, span_metrics

THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))


def score_predictions(
    examples: Sequence[EventExample], predictions: Sequence[TextPrediction], schema: LabelSchema
) -> dict:
    """Event and actor metrics of ``predictions`` against the gold labels of ``examples``."""
    metrics = event_metrics([e.event for e in examples], [p.events for p in predictions], schema.event_names)
    metrics.update(span_metrics([e.actors for e in examples], [p.actors for p in predictions], schema.role_tags))
    metrics.update(filler_metrics(examples, predictions, schema.role_tags))
    metrics["examples"] = len(examples)
    return metrics


def with_thresholds(
    predictions: Sequence[TextPrediction], schema: LabelSchema, thresholds: Sequence[float]
) -> list[TextPrediction]:
    names = schema.event_names
    return [
        dataclasses.replace(p, events=tuple(n for n, s, t in zip(names, p.event_scores, thresholds) if s >= t))
        for p in predictions
    ]


def tune_thresholds(
    examples: Sequence[EventExample],
    predictions: Sequence[TextPrediction],
    schema: LabelSchema,
    floor: float = 0.1,
    min_support: int = 5,
) -> tuple[float, ...]:
    """One multilabel decision threshold per event class: the value of a fixed grid (at least ``floor``)
    that maximises that class's F1 on ``examples`` (ties go to the value closest to 0.5), or 0.5 for a class
    with fewer than ``min_support`` positive examples. Each class's F1 depends on its own threshold only, so
    this also maximises macro-F1 over the grid."""
    labelled = [(as_label_set(e.event), p.event_scores) for e, p in zip(examples, predictions) if e.event is not None]
    grid = [t for t in THRESHOLD_GRID if t >= floor] or [0.5]
    thresholds = []
    for index, name in enumerate(schema.event_names):
        gold = np.array([name in labels for labels, _ in labelled], dtype=bool)
        scores = np.array([float(s[index]) for _, s in labelled])
        if gold.sum() < min_support:
            thresholds.append(0.5)
            continue
        best = max((_f1_at(gold, scores, t), -abs(t - 0.5), t) for t in grid)
        thresholds.append(best[2])
    return tuple(thresholds)


def _f1_at(gold: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    predicted = scores >= threshold
    true_positives = int((gold & predicted).sum())
    return f1_score(safe_divide(true_positives, int(predicted.sum())), safe_divide(true_positives, int(gold.sum())))


def evaluate_loaded(
    loaded: LoadedModel,
    examples: Sequence[EventExample],
    batch_size: int = 64,
    selection_metric: str = "mean_f1",
    window_overlap: int = 32,
) -> tuple[dict, list[TextPrediction]]:
    """Predict ``examples`` with the model as it is and score them (texts longer than the model's max
    length in windows overlapping by ``window_overlap`` sub-words, as ``inference.window_overlap``)."""
    predictions = predict_windowed(loaded, [e.text for e in examples], batch_size, window_overlap)
    return _scored(examples, predictions, loaded.label_schema, loaded.settings, selection_metric), predictions


def evaluate_tuning_threshold(
    loaded: LoadedModel,
    examples: Sequence[EventExample],
    batch_size: int = 64,
    selection_metric: str = "mean_f1",
    floor: float = 0.1,
    min_support: int = 5,
    window_overlap: int = 32,
) -> tuple[dict, list[TextPrediction], HeadSettings]:
    """:func:`evaluate_loaded` after tuning the multilabel decision thresholds on ``examples``
    (:func:`tune_thresholds` with ``floor`` and ``min_support``); also returns the head settings with those
    thresholds (for a multiclass model, or no examples, the model's own). The model is not changed: whoever
    owns it decides whether to adopt the settings (the trainer does)."""
    schema = loaded.label_schema
    predictions = predict_windowed(loaded, [e.text for e in examples], batch_size, window_overlap)
    settings = loaded.settings
    if schema.multilabel and examples:
        thresholds = tune_thresholds(examples, predictions, schema, floor, min_support)
        settings = dataclasses.replace(settings, class_thresholds=thresholds)
        predictions = with_thresholds(predictions, schema, thresholds)
    return _scored(examples, predictions, schema, settings, selection_metric), predictions, settings


def evaluate_adopting_thresholds(
    loaded: LoadedModel,
    examples: Sequence[EventExample],
    settings: TrainingConfig,
    window_overlap: int,
    tune_threshold: bool,
    selection_metric: str,
) -> dict:
    """Dev metrics as training takes them: a multilabel model with ``tune_threshold`` adopts the per-class
    thresholds :func:`evaluate_tuning_threshold` tunes on ``examples`` (so the checkpoint saved next carries
    them); any other model is scored as it is (:func:`evaluate_loaded`). The trainer's own corpus and each
    auxiliary corpus (``multicorpus.py``) are evaluated through this one function."""
    if loaded.label_schema.multilabel and tune_threshold:
        metrics, _, tuned = evaluate_tuning_threshold(
            loaded, examples, settings.eval_batch_size, selection_metric,
            floor=settings.threshold_floor, min_support=settings.threshold_min_support, window_overlap=window_overlap,
        )
        loaded.joint_model.settings = tuned
        return metrics
    metrics, _ = evaluate_loaded(loaded, examples, settings.eval_batch_size, selection_metric, window_overlap)
    return metrics


def _scored(
    examples: Sequence[EventExample],
    predictions: Sequence[TextPrediction],
    schema: LabelSchema,
    settings: HeadSettings,
    selection_metric: str,
) -> dict:
    metrics = score_predictions(examples, predictions, schema)
    if schema.multilabel:
        thresholds = settings.thresholds(len(schema.event_names))
        metrics["threshold"] = float(np.mean(thresholds))  # their mean, for the charts
        metrics["thresholds"] = dict(zip(schema.event_names, map(float, thresholds)))
    metrics["selection_score"] = selection_score(metrics, selection_metric)
    return metrics


def evaluate(model: str | Path, config: Config, split: str = "test", decoding: str | None = None) -> dict:
    """Metrics of the model at ``model`` (``models:/name@alias``, ``runs:/<id>/model`` or a local
    directory) on ``split`` (``train``, ``dev``, ``test``, ``file``: ``evaluation.files``, or ``dev_shifted``:
    dev with its entities substituted, scored with the model's own thresholds, never tuned on it) of the corpus
    described by ``config``, computed with the numeric backend ``config.inference.backend`` (so
    ``--backend int8`` measures what int8 costs). The result names the examples it was scored on by their
    digest, and the backend that ran (``backend``; ``backend_requested``, ``backend_reason``: ``auto`` and
    ``bf16`` resolve per machine), and a warning says so when the model trained on some of them.

    ``decoding`` (``viterbi`` or ``greedy``) replaces the BIO decoding the model was saved with, to
    measure what constrained decoding is worth on the same weights; ``None`` keeps the model's own."""
    evaluation = load_named_set(config, split)
    backend = resolve_backend(config.inference.backend)
    loaded = apply_backend(load_joint_model(model), backend)
    if decoding is not None:
        loaded = loaded.with_settings(dataclasses.replace(loaded.settings, decoding=decoding))
    examples = list(evaluation.examples)
    leaked = warn_if_trained_on(str(model), loaded.directory, examples, split)
    metrics, _ = evaluate_loaded(
        loaded, examples, batch_size=config.training.eval_batch_size, selection_metric=config.training.selection_metric,
        window_overlap=config.inference.window_overlap,
    )
    metrics.update(
        {"split": split, "model": str(model), "backend": backend.name, "backend_requested": backend.requested,
         "backend_reason": backend.reason, "decoding": loaded.settings.decoding,
         "digest": evaluation.digest, "description": evaluation.description, "trained_on_examples": len(leaked)}
    )
    return metrics


def summary_line(metrics: dict) -> str:
    def show(key: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{value:.4f}"

    multilabel = f"  event micro-F1 {show('event_micro_f1')}  example-F1 {show('event_example_f1')}" if "event_micro_f1" in metrics else ""
    fillers = f"  filler P {show('filler_precision')} R {show('filler_recall')} F1 {show('filler_f1')}" if "filler_f1" in metrics else ""
    return (
        f"event accuracy {show('event_accuracy')}  event macro-F1 {show('event_macro_f1')}{multilabel}  "
        f"actor P {show('actor_precision')} R {show('actor_recall')} F1 {show('actor_f1')}{fillers}"
    )


__all__ = [
    "evaluate",
    "evaluate_adopting_thresholds",
    "evaluate_loaded",
    "evaluate_tuning_threshold",
    "score_predictions",
    "summary_line",
    "tune_thresholds",
]
