"""Human-readable reports of an evaluation and of the training data, written as files that the trainer
logs as MLflow artifacts: classification report, confusion matrix PNG, per-role span report, the worst
dev errors, and data statistics with a sha256 fingerprint of every input file."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from conflict_events.labels import LabelSchema
from conflict_events.prediction import TextPrediction
from conflict_events.schema import EventExample
from conflict_events.training.metrics import confusion_matrix, span_tuples


def _table(title: str, rows: dict[str, dict], first_column: str) -> str:
    width = max([len(first_column)] + [len(name) for name in rows]) + 2
    lines = [title, f"{first_column:<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, values in rows.items():
        lines.append(
            f"{name:<{width}}{values['precision']:>10.4f}{values['recall']:>10.4f}{values['f1']:>10.4f}{values['support']:>10d}"
        )
    return "\n".join(lines)


def classification_report(metrics: dict) -> str:
    """Per-class table plus accuracy and macro-F1 (like sklearn's report)."""
    if not metrics.get("per_class"):
        return "no event-labeled examples\n"
    text = _table("Event classes", metrics["per_class"], "class")
    text += f"\n\naccuracy   {metrics['event_accuracy']:.4f}  ({metrics['event_examples']} examples)"
    macro = metrics["event_macro_f1"]  # None when no class occurs in gold or predictions
    text += f"\nmacro F1   {'n/a' if macro is None else format(macro, '.4f')}\n"
    return text


def role_report(metrics: dict) -> str:
    """Per-role strict span P/R/F1 and the micro average."""
    if not metrics.get("per_role"):
        return "no actor-labeled examples\n"
    text = _table("Actor roles (strict span match)", metrics["per_role"], "role")
    text += (
        f"\n\nmicro      P {metrics['actor_precision']:.4f}  R {metrics['actor_recall']:.4f}"
        f"  F1 {metrics['actor_f1']:.4f}  ({metrics['actor_examples']} examples)\n"
    )
    return text


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.9 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    if title:
        axes.set_title(title)
    threshold = matrix.max() / 2 if matrix.size and matrix.max() else 0
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            axes.text(
                column, row, str(matrix[row, column]), ha="center", va="center",
                color="white" if matrix[row, column] > threshold else "black",
            )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _gold_events(example: EventExample) -> list[str]:
    if example.event is None:
        return []
    return [example.event] if isinstance(example.event, str) else sorted(example.event)


def _show_spans(text: str, spans) -> str:
    return "; ".join(f"{role}:{text[start:end]}[{start}:{end}]" for role, start, end in sorted(spans, key=lambda s: s[1]))


def worst_errors(
    examples: Sequence[EventExample], predictions: Sequence[TextPrediction], schema: LabelSchema, limit: int = 50
) -> list[dict]:
    """The examples the model got most wrong, worst first: a wrong event counts by how little probability
    the gold class(es) got, plus one point per missed or spurious actor span."""
    names = schema.event_names
    rows = []
    for example, prediction in zip(examples, predictions, strict=True):
        gold = _gold_events(example)
        event_wrong = example.event is not None and set(gold) != set(prediction.events)
        gold_probability = float(np.mean([prediction.event_scores[names.index(g)] for g in gold if g in names])) if gold else None
        missed: set = set()
        spurious: set = set()
        if example.actors is not None:
            gold_spans, predicted_spans = span_tuples(example.actors), span_tuples(prediction.actors)
            missed, spurious = gold_spans - predicted_spans, predicted_spans - gold_spans
        cost = (1.0 - gold_probability if event_wrong and gold_probability is not None else 0.0) + len(missed) + len(spurious)
        if cost == 0:
            continue

        rows.append(
            {
                "id": example.id,
                "text": example.text,
                "gold_event": "|".join(gold),
                "predicted_event": "|".join(prediction.events),
                "gold_probability": None if gold_probability is None else round(gold_probability, 4),
                "missed_actors": _show_spans(example.text, missed),
                "spurious_actors": _show_spans(example.text, spurious),
                "error_score": round(cost, 4),
            }
        )
    rows.sort(key=lambda row: -row["error_score"])
    return rows[:limit]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_files(config) -> list[dict]:
    """Every configured input file with its size and sha256 (missing files are listed as missing)."""
    files = []
    for split in ("train", "dev", "test"):
        split_files = config.data.split(split)
        if split_files is None:
            continue
        for kind, relative in split_files.model_dump().items():
            if relative is None:
                continue
            path = config.data.resolve(relative)
            entry = {"split": split, "path": str(path)}
            if path.is_file():
                entry.update(bytes=path.stat().st_size, sha256=sha256_file(path))
            elif config.data.exists(kind, relative):
                entry["kind"] = kind  # a dataset folder or hub id: the run tags the examples' digests instead
            else:
                entry["missing"] = True
            files.append(entry)
    return files


def split_stats(examples: Sequence[EventExample] | None) -> dict:
    examples = examples or []
    events: Counter[str] = Counter()
    roles: Counter[str] = Counter()
    for example in examples:
        events.update(_gold_events(example))
        roles.update(span.role for span in example.actors or [])
    return {
        "examples": len(examples),
        "with_event_label": sum(example.event is not None for example in examples),
        "with_actor_labels": sum(example.actors is not None for example in examples),
        "mean_characters": round(float(np.mean([len(e.text) for e in examples])), 1) if examples else 0.0,
        "event_classes": dict(sorted(events.items())),
        "actor_roles": dict(sorted(roles.items())),
    }


def data_stats(config, splits: dict[str, Sequence[EventExample] | None]) -> dict:
    return {
        "data_root": config.data.root,
        "input_files": input_files(config),
        "splits": {name: split_stats(examples) for name, examples in splits.items() if examples},
    }


def write_evaluation_reports(
    directory: Path,
    metrics: dict,
    examples: Sequence[EventExample],
    predictions: Sequence[TextPrediction],
    schema: LabelSchema,
    prefix: str = "dev",
    title: str = "",
) -> dict[str, Path]:
    """Write the report files of one evaluated split into ``directory``; returns them by kind. ``title``
    heads the confusion matrix (which split, which epoch)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    written["classification_report"] = directory / f"{prefix}_classification_report.txt"
    written["classification_report"].write_text(classification_report(metrics), encoding="utf-8")
    written["role_report"] = directory / f"{prefix}_role_report.txt"
    written["role_report"].write_text(role_report(metrics), encoding="utf-8")
    written["metrics"] = directory / f"{prefix}_metrics.json"
    written["metrics"].write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    if not schema.multilabel:
        matrix = confusion_matrix([e.event for e in examples], [p.events for p in predictions], schema.event_names)
        written["confusion_matrix"] = plot_confusion_matrix(
            matrix, schema.event_names, directory / f"{prefix}_confusion_matrix.png", title or prefix
        )
    return written
