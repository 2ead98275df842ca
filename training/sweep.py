"""Recipe sweeps: a grid of config overrides x seeds (x cross-validation folds), each combination
trained with :func:`~conflict_events.training.trainer.train` in a nested MLflow run, then summarised.

- One **parent run** (tag ``sweep: parent``) holds the grid, the base config and the summary; one **child
  run** per (combination, seed[, fold]) is a normal training run (all params, per-epoch metrics, reports)
  with the tags ``sweep.combination``, ``sweep.overrides``, ``sweep.repeat``, ``sweep.fold``. Children
  never register a model and log it only with ``log_models`` (a MiniLM model is ~90 MB per run).
- **Seeds**: repeat ``r`` of a combination trains with ``training.seed + r`` (with folds:
  ``training.seed + r * folds + fold``, so every child has its own seed).
- **Folds** (:mod:`~conflict_events.training.crossval`): each child trains on the other folds and is
  scored on its held-out fold (as dev: best epoch, early stopping and the reported numbers). Repeat ``r``
  uses the partition of seed ``data.dev_split.seed + r``; every combination sees the same partitions.
- **Summary**: per combination the mean, the sample standard deviation and the standard error of the
  selection score (``training.selection_metric`` of the best epoch on ``training.selection_split``: dev or
  the shifted dev set), ``event_macro_f1`` and ``actor_f1`` on dev and on the shifted dev set
  (``shifted_*``); the winner is the arg-max of the mean selection score (ties: the first combination).
  Each combination's selection score is also compared with the winner's **paired** by (seed, fold) —
  the same seed on the same partition — whose standard error says whether the gap is more than noise.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from conflict_events import tracking
from conflict_events.config import Config, apply_override, config_from_mapping
from conflict_events.errors import ConfigError
from conflict_events.training.crossval import config_folds, cross_validation_pool
from conflict_events.training.trainer import Splits, TrainingResult, train

logger = logging.getLogger(__name__)

SUMMARY_METRICS = ("selection_score", "event_macro_f1", "actor_f1", "shifted_event_macro_f1", "shifted_actor_f1")


# --- the grid ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GridAxis:
    key: str
    values: tuple[Any, ...]


def parse_grid(text: str) -> GridAxis:
    """``key=v1,v2,...``; the values are YAML scalars like ``--set`` values (``3e-5``, ``true``, ``null``),
    and a value may be a flow list (``[1, 2]``) whose commas do not split."""
    if "=" not in text:
        raise ConfigError(f"--grid '{text}' must look like key.path=value1,value2")
    key, raw = (part.strip() for part in text.split("=", 1))
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--grid '{text}': empty key")
    try:
        values = yaml.safe_load(f"[{raw}]")
    except yaml.YAMLError:
        raise ConfigError(f"--grid '{text}': the values are not a comma-separated list of YAML scalars") from None
    if not values:
        raise ConfigError(f"--grid '{text}': no values")
    return GridAxis(key, tuple(values))


def combinations(axes: Sequence[GridAxis]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the first axis varying slowest."""
    keys = [axis.key for axis in axes]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ConfigError(f"--grid key given more than once: {', '.join(repeated)}")
    return [dict(zip(keys, values)) for values in itertools.product(*(axis.values for axis in axes))]


def with_overrides(config: Config, overrides: Mapping[str, Any], source: str = "--grid") -> Config:
    """``config`` with dotted-key overrides applied and validated again (unknown keys and bad values are
    errors naming the override)."""
    raw = config.model_dump(mode="json")
    for key, value in overrides.items():
        apply_override(raw, key.split("."), value, source=f"{source} {key}={value}")
    label = ", ".join(f"{key}={value}" for key, value in overrides.items())
    return config_from_mapping(raw, source=f"{source} {label}" if label else source)


def describe(overrides: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in overrides.items()) or "(base config)"


# --- results -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChildResult:
    combination: int
    repeat: int
    fold: int | None
    seed: int
    run_id: str
    metrics: dict[str, float | None]
    best_epoch: int | None


@dataclass(frozen=True)
class MetricSummary:
    mean: float | None
    std: float | None  # sample standard deviation (n - 1); None with fewer than 2 values
    stderr: float | None  # std / sqrt(n)
    n: int


@dataclass(frozen=True)
class CombinationSummary:
    index: int
    overrides: dict[str, Any]
    runs: int
    metrics: dict[str, MetricSummary]

    @property
    def label(self) -> str:
        return describe(self.overrides)

    def row(self, selection_metric: str) -> dict[str, Any]:
        row: dict[str, Any] = {"combination": self.index, "overrides": self.label, "runs": self.runs}
        for name, summary in self.metrics.items():
            shown = selection_metric if name == "selection_score" else name
            row.update({f"{shown}_mean": summary.mean, f"{shown}_std": summary.std, f"{shown}_stderr": summary.stderr})
        return row


@dataclass
class SweepResult:
    parent_run_id: str
    selection_metric: str
    children: list[ChildResult]
    summary: list[CombinationSummary]
    winner: CombinationSummary
    folds: int | None = None
    seeds: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def deltas(self) -> dict[int, MetricSummary]:
        return {item.index: paired_differences(self.children, item.index, self.winner.index) for item in self.summary}

    def table(self) -> str:
        return format_table(self.summary, self.selection_metric, self.winner.index, self.deltas())


def summarise_values(values: Sequence[float | None]) -> MetricSummary:
    present = [float(value) for value in values if value is not None]
    n = len(present)
    if n == 0:
        return MetricSummary(None, None, None, 0)
    mean = sum(present) / n
    if n < 2:
        return MetricSummary(mean, None, None, n)
    std = math.sqrt(sum((value - mean) ** 2 for value in present) / (n - 1))
    return MetricSummary(mean, std, std / math.sqrt(n), n)


def summarise(children: Sequence[ChildResult], grid: Sequence[dict[str, Any]]) -> list[CombinationSummary]:
    summaries = []
    for index, overrides in enumerate(grid):
        runs = [child for child in children if child.combination == index]
        metrics = {name: summarise_values([child.metrics.get(name) for child in runs]) for name in SUMMARY_METRICS}
        summaries.append(CombinationSummary(index, dict(overrides), len(runs), metrics))
    return summaries


def pick_winner(summary: Sequence[CombinationSummary]) -> CombinationSummary:
    """The combination with the highest mean selection score (ties and missing means: the first)."""
    scored = [item for item in summary if item.metrics["selection_score"].mean is not None]
    if not scored:
        raise ConfigError("the sweep produced no selection score")
    return max(scored, key=lambda item: (item.metrics["selection_score"].mean, -item.index))


def by_repeat_and_fold(child: ChildResult) -> tuple[int, int | None]:
    """Within one sweep, every combination runs repeat ``r`` with the same seed on the same partition."""
    return (child.repeat, child.fold)


def paired_differences(
    children: Sequence[ChildResult],
    combination: int,
    reference: int,
    metric: str = "selection_score",
    key: Callable[[ChildResult], Any] = by_repeat_and_fold,
) -> MetricSummary:
    """``metric`` of ``combination`` minus that of ``reference``, paired by ``key`` (by default the
    repeat and fold: both ran with the same seed on the same partition), so fold difficulty cancels out
    and the standard error is that of the difference (what decides whether one recipe really beats another)."""
    scores = {(child.combination, key(child)): child.metrics.get(metric) for child in children}
    differences = []
    for (index, pair), score in scores.items():
        other = scores.get((reference, pair))
        if index == combination and score is not None and other is not None:
            differences.append(score - other)
    return summarise_values(differences)


def summary_cell(item: MetricSummary) -> str:
    """``mean ± std (se stderr)``; the mean alone from one value; ``n/a`` from none."""
    if item.mean is None:
        return "n/a"
    if item.std is None:
        return f"{item.mean:.4f}"
    return f"{item.mean:.4f} ± {item.std:.4f} (se {item.stderr:.4f})"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns with a dashed rule under the headers."""
    widths = [max(len(str(row[column])) for row in [headers, *rows]) for column in range(len(headers))]
    lines = ["  ".join(str(value).ljust(width) for value, width in zip(row, widths)).rstrip() for row in [headers, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_table(
    summary: Sequence[CombinationSummary],
    selection_metric: str,
    winner: int | None = None,
    deltas: Mapping[int, MetricSummary] | None = None,
) -> str:
    """A plain-text table: mean ± std (standard error) per metric, and with ``deltas`` the paired
    difference of the selection score to the winner (mean ± standard error); the winner is marked ``*``."""

    def delta(item: MetricSummary | None) -> str:
        if item is None or item.mean is None:
            return "n/a"
        return f"{item.mean:+.4f}" + ("" if item.stderr is None else f" ± {item.stderr:.4f}")

    headers = [
        "", "#", "overrides", "runs", f"{selection_metric} (selection)", "event_macro_f1", "actor_f1",
        "shifted event_macro_f1", "shifted actor_f1",
    ]
    if deltas is not None:
        headers.append("vs winner (paired, ± se)")
    rows = [
        [
            "*" if item.index == winner else "",
            str(item.index),
            item.label,
            str(item.runs),
            *(summary_cell(item.metrics[name]) for name in SUMMARY_METRICS),
            *([delta(deltas.get(item.index))] if deltas is not None else []),
        ]
        for item in summary
    ]
    return text_table(headers, rows)


# --- the sweep -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChildPlan:
    combination: int
    repeat: int
    fold: int | None
    config: Config

    @property
    def name(self) -> str:
        return f"c{self.combination}-s{self.repeat}" + ("" if self.fold is None else f"-f{self.fold}")


def plan_children(base: Config, grid: Sequence[dict[str, Any]], seeds: int, folds: int | None) -> list[ChildPlan]:
    """Every child's config, validated before anything trains."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1 (got {seeds})")
    if folds is not None and folds < 2:
        raise ConfigError(f"--folds must be at least 2 (got {folds})")
    plans = []
    for index, overrides in enumerate(grid):
        combination = with_overrides(base, overrides)
        for repeat in range(seeds):
            for fold in [None] if folds is None else range(folds):
                offset = repeat if folds is None else repeat * folds + fold
                child = with_overrides(
                    combination,
                    {"training.seed": combination.training.seed + offset, "tracking.register_model": False},
                    source="sweep",
                )
                plans.append(ChildPlan(index, repeat, fold, child))
    return plans


def run_sweep(
    config: Config,
    axes: Sequence[GridAxis],
    *,
    seeds: int = 1,
    folds: int | None = None,
    log_models: bool = False,
    show_progress: bool = False,
    on_child: Callable[[ChildResult], None] | None = None,
) -> SweepResult:
    """Train every (combination, seed[, fold]) of the grid in nested MLflow runs and summarise them.

    ``on_child`` is called after each child run (the CLI prints a line)."""
    grid = combinations(axes) if axes else [{}]
    plans = plan_children(config, grid, seeds, folds)
    selection_metric = config.training.selection_metric
    pools: dict[str, Any] = {}

    def fold_splits(plan: ChildPlan) -> Splits | None:
        if plan.fold is None:
            return None
        data_key = json.dumps([plan.config.data.model_dump(mode="json"), plan.config.labels.model_dump(mode="json")])
        if data_key not in pools:
            pools[data_key] = cross_validation_pool(plan.config)
        pool = pools[data_key]
        fold = config_folds(plan.config, folds, plan.repeat, pool)[plan.fold]
        return Splits(train=fold.train, dev=fold.dev, test=pool.test, pool=pool.examples, train_rows=fold.train_rows)

    children: list[ChildResult] = []
    with tracking.start_training_run(config.tracking.experiment, run_name=_sweep_name(axes, seeds, folds)) as parent:
        parent_id = parent.info.run_id
        _log_parent_setup(config, axes, grid, seeds, folds, len(plans))
        scratch = Path(config.training.output_dir) / "sweep" / parent_id
        for plan in plans:
            output_dir = scratch / plan.name
            child_config = with_overrides(
                plan.config,
                {"training.output_dir": str(output_dir), "tracking.log_model": log_models},
                source="sweep",
            )
            result = train(
                child_config,
                splits=fold_splits(plan),
                nested=True,
                run_name=plan.name,
                show_progress=show_progress,
            )
            shutil.rmtree(output_dir, ignore_errors=True)
            child = ChildResult(
                combination=plan.combination,
                repeat=plan.repeat,
                fold=plan.fold,
                seed=child_config.training.seed,
                run_id=result.run_id,
                metrics=child_metrics(result),
                best_epoch=result.best_epoch,
            )
            _tag_child(child, grid[plan.combination], parent_id)
            children.append(child)
            _log_summary(summarise(children, grid), children, selection_metric, final=False)
            if on_child is not None:
                on_child(child)
        shutil.rmtree(scratch, ignore_errors=True)
        summary = summarise(children, grid)
        winner = pick_winner(summary)
        _log_summary(summary, children, selection_metric, final=True, winner=winner)
    return SweepResult(parent_id, selection_metric, children, summary, winner, folds=folds, seeds=seeds)


def child_metrics(result: TrainingResult) -> dict[str, float | None]:
    """A child's figures: the selection score on the split it was selected on (``training.selection_split``),
    dev's event macro-F1 and actor F1, and the shifted dev set's (None when it was off)."""
    shifted = result.shifted_dev_metrics or {}
    return {
        "selection_score": result.selection_metrics.get("selection_score"),
        "event_macro_f1": result.dev_metrics.get("event_macro_f1"),
        "actor_f1": result.dev_metrics.get("actor_f1"),
        "shifted_event_macro_f1": shifted.get("event_macro_f1"),
        "shifted_actor_f1": shifted.get("actor_f1"),
    }


def _sweep_name(axes: Sequence[GridAxis], seeds: int, folds: int | None) -> str:
    keys = ",".join(axis.key.split(".")[-1] for axis in axes) or "base"
    return f"sweep {keys} x{seeds} seed{'s' if seeds > 1 else ''}" + (f" x{folds} folds" if folds else "")


def _log_parent_setup(config: Config, axes, grid, seeds: int, folds: int | None, children: int) -> None:
    tracking.log_params(
        {
            "sweep.grid": tracking.param_value({axis.key: list(axis.values) for axis in axes}),
            "sweep.combinations": len(grid),
            "sweep.seeds": seeds,
            "sweep.folds": folds if folds is not None else "none",
            "sweep.children": children,
            "sweep.selection_metric": config.training.selection_metric,
            "training.seed": config.training.seed,
        }
    )
    tracking.log_text(
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True), "config/base_config.yaml"
    )
    tracking.log_run_tags(encoder=config.model.encoder, corpus=config.tracking.corpus, extra={"sweep": "parent"})


def _tag_child(child: ChildResult, overrides: dict[str, Any], parent_id: str) -> None:
    tags = {
        "sweep": "child",
        "sweep.parent": parent_id,
        "sweep.combination": str(child.combination),
        "sweep.overrides": json.dumps(overrides, default=str),
        "sweep.repeat": str(child.repeat),
        "sweep.fold": "" if child.fold is None else str(child.fold),
    }
    tracking.set_run_tags(child.run_id, tags)


def _log_summary(
    summary: Sequence[CombinationSummary],
    children: Sequence[ChildResult],
    selection_metric: str,
    *,
    final: bool,
    winner: CombinationSummary | None = None,
) -> None:
    """Summary files after every child (an interrupted sweep keeps what it measured); metrics, the
    MLflow table and the winner at the end."""
    rows = [item.row(selection_metric) for item in summary]
    deltas = None
    if winner is not None:
        deltas = {item.index: paired_differences(children, item.index, winner.index) for item in summary}
        for row in rows:
            paired = deltas[row["combination"]]
            row.update(vs_winner_mean=paired.mean, vs_winner_stderr=paired.stderr)
    tracking.log_json(
        {"summary": rows, "children": [asdict(child) for child in children], "complete": final},
        "sweep/summary.json",
    )
    tracking.log_text(format_table(summary, selection_metric, winner.index if winner else None, deltas) + "\n", "sweep/summary.txt")
    if not final:
        return
    tracking.log_table(rows, "sweep/summary_table.json")
    metrics: dict[str, float] = {}
    for item in summary:
        for name, values in item.metrics.items():
            shown = selection_metric if name == "selection_score" else name
            for statistic in ("mean", "std", "stderr"):
                value = getattr(values, statistic)
                if value is not None:
                    metrics[tracking.metric_key(f"c{item.index}_{shown}_{statistic}")] = value
    if winner is not None:
        for name, values in winner.metrics.items():
            shown = selection_metric if name == "selection_score" else name
            if values.mean is not None:
                metrics[f"winner_{shown}_mean"] = values.mean
        metrics["winner_combination"] = float(winner.index)
        for index, paired in (deltas or {}).items():
            if index != winner.index and paired.mean is not None:
                metrics[f"c{index}_vs_winner_mean"] = paired.mean
                if paired.stderr is not None:
                    metrics[f"c{index}_vs_winner_stderr"] = paired.stderr
        tracking.set_tags({"sweep.winner": winner.label, "sweep.winner_combination": str(winner.index)})
    tracking.log_metrics(metrics)
