"""Does unlabeled news help distillation? `distill.unlabeled` measured on cross-validation folds (issue 20).

    python benchmarks/unlabeled_folds.py --data-root ../shared/data/conflibert \
        --set training.early_stopping_patience=4 --output outputs/unlabeled_folds.json

(Patience 4 with 12 teacher epochs is the schedule of the entity-substitution sweep of docs/EXPERIMENTS.md,
sweep 6b6f64a6, on the same folds and seeds: each fold's teacher trains as that sweep's ``cameo_best`` child
of the fold did (same config, fold and seed). Cost: at most 3 x (12 + 8 + 8) = 84 epochs of ~1,050 sentences, the 24 with unlabeled news on 1,850
sentences, some of them long.)

For each of ``--folds`` (3) folds of CAMEO train, the folds ``sweep --folds 3`` makes (training/crossval.py,
partition seed ``data.dev_split.seed``; the run of fold ``i`` trains with ``training.seed + i``, as a sweep's
child of that fold does):

1. a **teacher** is trained on the fold's training part with ``--teacher-config`` (configs/cameo_best.yaml)
   for ``--teacher-epochs`` (12), scored on the held-out part (dev) and the shifted dev set;
2. two **students** are distilled from that teacher on the same fold, with the same seed (so the pair
   differs only in the unlabeled sentences): ``--student-config`` (configs/cameo_distill.yaml) with its
   ``distill.unlabeled`` (``max_sentences`` set to ``--unlabeled-sentences``, 800), and the same config
   with ``distill.unlabeled=[]``; ``--student-epochs`` (8) each.

All three are ordinary runs of ``train(config, splits=fold)`` and ``distill(config, [teacher], splits=fold)``
in the MLflow experiment ``--experiment`` (``unlabeled-folds``), tagged ``unlabeled_folds.id``, ``.fold`` and
``.arm``; nothing is logged as a model or registered. A last run (``unlabeled_folds.arm: summary``) holds the
paired differences as metrics and the JSON as an artifact.

Printed per fold: dev event macro-F1 and actor F1, shifted dev event macro-F1 and actor F1 of the teacher
and both students, and the students' difference (with - without); then per metric the mean ± sd of the
paired differences over the folds, with the standard error. ``--output`` gets every number (rewritten after
each fold, ``complete: false`` until the last). ``--folds-to-run 0,2`` runs a subset; ``--resume`` keeps the
folds an earlier invocation with the same settings wrote to ``--output`` and runs the others.

``--set KEY=VALUE`` (repeatable) applies to the teacher and both students; ``--teacher-epochs``,
``--student-epochs``, ``--experiment`` and the registration switches are applied after it. Checkpoints go to
``--work-dir`` (default: the student config's ``training.output_dir``/unlabeled-folds) and are deleted once
a fold is done.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from conflict_events import tracking
from conflict_events.config import Config, config_from_mapping, load_config
from conflict_events.errors import ConfigError, ConflictEventsError
from conflict_events.training.crossval import CrossValidationPool, Fold, config_folds, cross_validation_pool
from conflict_events.training.distill import distill
from conflict_events.training.metrics import selection_score
from conflict_events.training.sweep import MetricSummary, summarise_values, summary_cell, text_table, with_overrides
from conflict_events.training.trainer import Splits, TrainingResult, train
from conflict_events.training.unlabeled import unlabeled_files

ARMS = ("unlabeled", "plain")  # the students: with distill.unlabeled, and without
# What is compared, as (key, heading); shifted_* are the shifted dev set's (data.shifted_dev).
METRICS = (
    ("event_macro_f1", "dev event macro-F1"),
    ("actor_f1", "dev actor F1"),
    ("shifted_event_macro_f1", "shifted event macro-F1"),
    ("shifted_actor_f1", "shifted actor F1"),
    ("mean_f1", "dev mean F1"),
    ("shifted_mean_f1", "shifted mean F1"),
)
SHOWN_METRICS = METRICS[:4]  # the table's columns; the JSON has all


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-config", default="configs/cameo_best.yaml")
    parser.add_argument("--student-config", default="configs/cameo_distill.yaml")
    parser.add_argument("--data-root")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--folds-to-run", type=_fold_list, help="Comma-separated 0-based folds (default: all).")
    parser.add_argument("--teacher-epochs", type=_positive, default=12)
    parser.add_argument("--student-epochs", type=_positive, default=8)
    parser.add_argument("--unlabeled-sentences", type=_positive, default=800, help="distill.unlabeled[*].max_sentences")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--experiment", default="unlabeled-folds")
    parser.add_argument("--output", type=Path, default=Path("unlabeled_folds.json"))
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--resume", action="store_true", help="Keep the folds --output already has (same settings).")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False)
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _fold_list(text: str) -> list[int]:
    try:
        return sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fold numbers (got {text!r})") from None


# --- the three recipes -------------------------------------------------------------------------------
def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """What decides the numbers (a resumed measurement must have the same)."""
    return {
        "teacher_config": args.teacher_config,
        "student_config": args.student_config,
        "data_root": args.data_root,
        "folds": args.folds,
        "teacher_epochs": args.teacher_epochs,
        "student_epochs": args.student_epochs,
        "unlabeled_sentences": args.unlabeled_sentences,
        "overrides": list(args.overrides),
        "experiment": args.experiment,
    }


def load_recipes(args: argparse.Namespace) -> dict[str, Config]:
    """The teacher's config and the two students' (``unlabeled``, ``plain``), validated before anything trains."""
    shared = [*args.overrides, f"tracking.experiment={args.experiment}", "tracking.register_model=false", "tracking.log_model=false"]
    teacher = load_config(args.teacher_config, [*shared, f"training.epochs={args.teacher_epochs}"], data_root=args.data_root)
    student = load_config(args.student_config, [*shared, f"training.epochs={args.student_epochs}"], data_root=args.data_root)
    if not student.distill.unlabeled:
        raise ConfigError(f"{args.student_config}: distill.unlabeled is empty, so there is nothing to measure")
    # Both must cut the same folds from the same data, or the students would not share their teacher's fold.
    for section in ("data", "labels"):
        if getattr(teacher, section) != getattr(student, section):
            raise ConfigError(
                f"{args.teacher_config} and {args.student_config} have different '{section}' sections: "
                "the teacher and its students must train on the same folds"
            )
    raw = student.model_dump(mode="json")
    for entry in raw["distill"]["unlabeled"]:
        entry["max_sentences"] = args.unlabeled_sentences
    with_news = config_from_mapping(raw, source=f"{args.student_config} (--unlabeled-sentences {args.unlabeled_sentences})")
    unlabeled_files(with_news)  # a wrong archive path fails now, not after the first teacher has trained
    plain = with_overrides(student, {"distill.unlabeled": []}, source="unlabeled_folds")
    return {"teacher": teacher, "unlabeled": with_news, "plain": plain}


def fold_splits(pool: CrossValidationPool, fold: Fold) -> Splits:
    """A fold as ``sweep --folds`` hands it to a child: rows of the pool, so the pool is tokenised once."""
    return Splits(train=fold.train, dev=fold.dev, test=pool.test, pool=pool.examples, train_rows=fold.train_rows)


def for_fold(config: Config, fold: int, output_dir: Path) -> Config:
    # Fold i's seed is training.seed + i, as sweep's child of fold i (repeat 0) has.
    overrides = {"training.seed": config.training.seed + fold, "training.output_dir": str(output_dir)}
    return with_overrides(config, overrides, source="unlabeled_folds")


# --- one fold --------------------------------------------------------------------------------------
def run_metrics(result: TrainingResult) -> dict[str, Any]:
    """The best checkpoint's figures on dev and on the shifted dev set (None where it is off)."""
    shifted = result.shifted_dev_metrics or {}
    return {
        "run_id": result.run_id,
        "best_epoch": result.best_epoch,
        "epochs_done": result.epochs_done,
        "event_macro_f1": result.dev_metrics.get("event_macro_f1"),
        "actor_f1": result.dev_metrics.get("actor_f1"),
        "mean_f1": selection_score(result.dev_metrics, "mean_f1"),
        "shifted_event_macro_f1": shifted.get("event_macro_f1"),
        "shifted_actor_f1": shifted.get("actor_f1"),
        "shifted_mean_f1": selection_score(shifted, "mean_f1") if shifted else None,
    }


def paired_difference(first: dict[str, Any], second: dict[str, Any]) -> dict[str, float | None]:
    return {
        key: None if first.get(key) is None or second.get(key) is None else first[key] - second[key]
        for key, _ in METRICS
    }


def run_fold(
    recipes: dict[str, Config], pool: CrossValidationPool, fold: Fold, work_dir: Path, tags: dict[str, str], show_progress: bool
) -> dict[str, Any]:
    splits = fold_splits(pool, fold)
    folder = work_dir / f"fold{fold.index}"
    teacher_config = for_fold(recipes["teacher"], fold.index, folder / "teacher")
    teacher = train(teacher_config, splits=splits, show_progress=show_progress, run_name=f"unlabeled-folds f{fold.index} teacher")
    tracking.set_run_tags(teacher.run_id, {**tags, "unlabeled_folds.fold": str(fold.index), "unlabeled_folds.arm": "teacher"})
    record: dict[str, Any] = {
        "fold": fold.index,
        "train_examples": len(fold.train),
        "dev_examples": len(fold.dev),
        "teacher": {"seed": teacher_config.training.seed, **run_metrics(teacher)},
        "arms": {},
    }
    for arm in ARMS:
        config = for_fold(recipes[arm], fold.index, folder / arm)
        outcome = distill(config, [str(teacher.best_model_dir)], splits=splits, show_progress=show_progress)
        tracking.set_run_tags(outcome.training.run_id, {**tags, "unlabeled_folds.fold": str(fold.index), "unlabeled_folds.arm": arm})
        sampled = outcome.unlabeled.total("sampled") if outcome.unlabeled is not None else 0
        record["arms"][arm] = {"seed": config.training.seed, "unlabeled_sentences": sampled, **run_metrics(outcome.training)}
    record["difference"] = paired_difference(record["arms"]["unlabeled"], record["arms"]["plain"])
    shutil.rmtree(folder, ignore_errors=True)
    return record


# --- the summary -----------------------------------------------------------------------------------
def summarise(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per metric, over the folds: the mean, sample sd and standard error of the teacher, each student and
    the paired difference (with - without unlabeled sentences)."""

    def over_folds(values: list[float | None]) -> dict[str, Any]:
        item = summarise_values(values)
        return {"mean": item.mean, "std": item.std, "stderr": item.stderr, "n": item.n}

    columns = {
        "teacher": [record["teacher"] for record in records],
        **{arm: [record["arms"][arm] for record in records] for arm in ARMS},
        "difference": [record["difference"] for record in records],
    }
    return {name: {key: over_folds([row.get(key) for row in rows]) for key, _ in METRICS} for name, rows in columns.items()}


def _cell(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _summary_cell(statistics: dict[str, Any], signed: bool = False) -> str:
    """``mean ± sd (se stderr)`` over the folds (the mean alone from one fold)."""
    if statistics["mean"] is None:
        return "n/a"
    if signed:
        spread = "" if statistics["std"] is None else f" ± {statistics['std']:.4f} (se {statistics['stderr']:.4f})"
        return f"{statistics['mean']:+.4f}{spread}"
    return summary_cell(MetricSummary(statistics["mean"], statistics["std"], statistics["stderr"], statistics["n"]))


def report(records: Sequence[dict[str, Any]], summary: dict[str, dict[str, dict[str, Any]]] | None = None) -> str:
    """Per fold the teacher, both students and their difference; with ``summary``, then each one's mean ± sd
    (se) over the folds."""
    headers = ["fold", "model", *(heading for _, heading in SHOWN_METRICS), "best epoch"]
    rows = []
    for record in records:
        models = [("teacher", record["teacher"]), *((f"student, {arm}", record["arms"][arm]) for arm in ARMS)]
        for name, values in models:
            rows.append([str(record["fold"]), name, *(_cell(values[key]) for key, _ in SHOWN_METRICS), str(values["best_epoch"])])
        rows.append([str(record["fold"]), "unlabeled - plain", *(_cell(record["difference"][key], True) for key, _ in SHOWN_METRICS), ""])
    if summary is None:
        return text_table(headers, rows)
    labels = {"teacher": "teacher", **{arm: f"student, {arm}" for arm in ARMS}, "difference": "unlabeled - plain (paired)"}
    for name, label in labels.items():
        cells = [_summary_cell(summary[name][key], signed=name == "difference") for key, _ in SHOWN_METRICS]
        rows.append([f"{len(records)} folds", label, *cells, ""])
    return text_table(headers, rows) + "\n(rows of all folds: mean ± sd (se standard error) over the folds)"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Whole or not at all: an interrupted write never leaves half a file to resume from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def earlier_folds(path: Path, settings: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """The measurement id and fold records of an earlier invocation with the same settings."""
    if not path.is_file():
        return None, []
    earlier = json.loads(path.read_text(encoding="utf-8"))
    if earlier.get("settings") != settings:
        raise ConfigError(f"--resume: {path} was written with other settings ({earlier.get('settings')}); use another --output")
    return earlier.get("id"), list(earlier.get("folds", []))


def log_summary_run(experiment: str, data: dict[str, Any], tags: dict[str, str]) -> str:
    """One run holding the paired differences (``difference_<metric>_mean``, ``_std``, ``_stderr``) and the JSON."""
    with tracking.start_training_run(experiment, run_name="unlabeled-folds summary") as run:
        tracking.set_tags({**tags, "unlabeled_folds.arm": "summary", "unlabeled_folds.complete": str(data["complete"]).lower()})
        tracking.log_params({f"unlabeled_folds.{key}": value for key, value in data["settings"].items()})
        metrics = {
            f"{name}_{key}_{statistic}": value
            for name, per_metric in data["summary"].items()
            for key, statistics in per_metric.items()
            for statistic, value in statistics.items()
            if statistic != "n" and value is not None
        }
        tracking.log_metrics({**metrics, "folds_measured": len(data["folds"])})
        tracking.log_json(data, "unlabeled_folds/summary.json")
        return run.info.run_id


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    settings = settings_of(args)
    recipes = load_recipes(args)
    pool = cross_validation_pool(recipes["teacher"])
    folds = config_folds(recipes["teacher"], args.folds, 0, pool)
    wanted = args.folds_to_run if args.folds_to_run is not None else list(range(args.folds))
    if any(index >= args.folds for index in wanted):
        raise ConfigError(f"--folds-to-run {wanted}: there are {args.folds} folds (0..{args.folds - 1})")
    measurement_id, records = earlier_folds(args.output, settings) if args.resume else (None, [])
    measurement_id = measurement_id or os.urandom(4).hex()
    tags = {"unlabeled_folds.id": measurement_id}
    work_dir = args.work_dir or Path(recipes["unlabeled"].training.output_dir) / "unlabeled-folds" / measurement_id
    done = {record["fold"] for record in records}

    def snapshot(complete: bool) -> dict[str, Any]:
        ordered = sorted(records, key=lambda record: record["fold"])
        return {"id": measurement_id, "settings": settings, "complete": complete, "folds": ordered, "summary": summarise(ordered)}

    for index in wanted:
        if index in done:
            print(f"fold {index}: kept from {args.output}")
            continue
        records.append(run_fold(recipes, pool, folds[index], work_dir, tags, args.progress))
        write_json(args.output, snapshot(complete=False))
        print(report([records[-1]]), flush=True)
    data = snapshot(complete={record["fold"] for record in records} == set(range(args.folds)))
    write_json(args.output, data)
    summary_run = log_summary_run(args.experiment, data, tags)
    print(f"\nunlabeled-folds {measurement_id}: {len(records)} of {args.folds} folds, summary run {summary_run}")
    print(report(data["folds"], data["summary"]))
    print(f"written: {args.output}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConflictEventsError as error:  # the project's own errors say what is wrong: no traceback
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
