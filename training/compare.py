"""Compare recipes across finished sweeps, paired by fold and seed: the yardstick of issue 6 ("beats the
plain recipe by at least N points, each difference larger than twice its standard error").

A **recipe** is one combination of one sweep (``PARENT_RUN_ID:COMBINATION``, or every combination of a
sweep with ``PARENT_RUN_ID`` alone). Its runs are the sweep's finished child runs; their figures are the
child runs' best-epoch dev metrics (``best_dev_<metric>``), as the sweep itself reports them.

Recipes from *different* sweeps are compared **paired**: two child runs form a pair when they were
scored on the same held-out fold of the same partition (``data.dev_split.seed`` + fold index) and trained
with the same ``training.seed``, as happens when sweeps share the base seeds (see
:mod:`~conflict_events.training.sweep`). Fold difficulty then cancels out, and the standard error of the
per-pair differences says whether a gap is more than noise. Runs without a partner are left out of the
difference and counted in the output, never silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from conflict_events import tracking
from conflict_events.errors import ConfigError
from conflict_events.training.sweep import (
    ChildResult,
    MetricSummary,
    describe,
    paired_differences,
    summarise_values,
    summary_cell,
    text_table,
)

DEFAULT_METRICS = ("event_macro_f1", "actor_f1")


@dataclass(frozen=True)
class Recipe:
    index: int
    sweep_run_id: str
    combination: int
    overrides: dict[str, Any]
    children: tuple[ChildResult, ...]
    partition_seeds: dict[str, int]  # child run id -> data.dev_split.seed it was trained with

    def pair_key(self, child: ChildResult) -> tuple[int, int | None, int]:
        return pair_key(child, self.partition_seeds[child.run_id])

    @property
    def label(self) -> str:
        return f"{self.sweep_run_id[:8]} c{self.combination}: {describe(self.overrides)}"


@dataclass(frozen=True)
class Requirement:
    """A candidate must beat the reference on ``metric`` by at least ``min_gain`` (mean of the paired
    differences) and by more than twice the standard error of those differences."""

    metric: str
    min_gain: float

    def holds(self, difference: MetricSummary) -> bool:
        if difference.mean is None or difference.stderr is None:
            return False
        return difference.mean >= self.min_gain and difference.mean > 2 * difference.stderr


def parse_recipe_reference(text: str) -> tuple[str, int | None]:
    """``RUN_ID`` (every combination of that sweep) or ``RUN_ID:COMBINATION``."""
    run_id, _, combination = text.partition(":")
    if not run_id:
        raise ConfigError(f"recipe '{text}' must look like SWEEP_RUN_ID or SWEEP_RUN_ID:COMBINATION")
    if not combination:
        return run_id, None
    if not combination.isdigit():
        raise ConfigError(f"recipe '{text}': the combination after ':' must be a number (got '{combination}')")
    return run_id, int(combination)


def parse_requirement(text: str) -> Requirement:
    """``metric=gain``, the gain in metric units (``event_macro_f1=0.02`` is two points)."""
    metric, _, gain = text.partition("=")
    try:
        return Requirement(metric.strip(), float(gain))
    except ValueError:
        raise ConfigError(f"--require '{text}' must look like metric=min_gain, e.g. event_macro_f1=0.02") from None


def pair_key(child: ChildResult, partition_seed: int) -> tuple[int, int | None, int]:
    """Runs pair when scored on the same fold of the same partition after training with the same seed."""
    return (partition_seed, child.fold, child.seed)


def load_recipes(references: Sequence[str], metrics: Sequence[str]) -> list[Recipe]:
    """Every recipe named by ``references``, read from the tracking store, in the order given."""
    recipes: list[Recipe] = []
    for text in references:
        run_id, wanted = parse_recipe_reference(text)
        runs = _finished_children(run_id, text)
        by_combination: dict[int, list] = {}
        for run in runs:
            by_combination.setdefault(int(run.data.tags["sweep.combination"]), []).append(run)
        if wanted is not None and wanted not in by_combination:
            raise ConfigError(
                f"recipe '{text}': sweep {run_id} has no finished runs of combination {wanted} "
                f"(it has {', '.join(map(str, sorted(by_combination))) or 'none'})"
            )
        for combination in [wanted] if wanted is not None else sorted(by_combination):
            members = by_combination[combination]
            recipes.append(
                Recipe(
                    index=len(recipes),
                    sweep_run_id=run_id,
                    combination=combination,
                    overrides=json.loads(members[0].data.tags.get("sweep.overrides") or "{}"),
                    children=tuple(_child_result(run, len(recipes), metrics) for run in members),
                    partition_seeds={run.info.run_id: int(run.data.params.get("data.dev_split.seed", 0)) for run in members},
                )
            )
        _check_metrics_exist(runs, metrics, text)
    return recipes


def _check_metrics_exist(runs: Sequence, metrics: Sequence[str], text: str) -> None:
    """A misspelt metric would otherwise show as n/a everywhere."""
    logged = {key.removeprefix("best_dev_") for run in runs for key in run.data.metrics if key.startswith("best_dev_")}
    missing = [metric for metric in metrics if metric not in logged]
    if missing:
        raise ConfigError(
            f"recipe '{text}': no run logged best_dev_{missing[0]}; the best-epoch dev metrics there are: {', '.join(sorted(logged))}"
        )


def _finished_children(run_id: str, text: str) -> list:
    parent = tracking.find_run(run_id)
    if parent is None:
        raise ConfigError(f"recipe '{text}': no run {run_id} in the tracking store")
    if parent.data.tags.get("sweep") != "parent":
        raise ConfigError(f"recipe '{text}': run {run_id} is not a sweep (no tag sweep=parent)")
    runs = tracking.runs_tagged(parent.info.experiment_id, "sweep.parent", run_id)
    finished = [run for run in runs if run.info.status == "FINISHED"]
    if not finished:
        raise ConfigError(f"recipe '{text}': sweep {run_id} has no finished child runs")
    return finished


def _child_result(run, recipe_index: int, metrics: Sequence[str]) -> ChildResult:
    fold = run.data.tags.get("sweep.fold")
    best_epoch = run.data.metrics.get("best_epoch")
    return ChildResult(
        combination=recipe_index,
        repeat=int(run.data.tags.get("sweep.repeat") or 0),
        fold=int(fold) if fold else None,
        seed=int(run.data.params["training.seed"]),
        run_id=run.info.run_id,
        metrics={metric: run.data.metrics.get(f"best_dev_{metric}") for metric in metrics},
        best_epoch=None if best_epoch is None else int(best_epoch),
    )


@dataclass(frozen=True)
class Comparison:
    recipes: list[Recipe]
    metrics: tuple[str, ...]
    reference: int
    summaries: dict[int, dict[str, MetricSummary]]  # recipe -> metric -> over its own runs
    differences: dict[int, dict[str, MetricSummary]]  # recipe -> metric -> paired differences to the reference
    unpaired: dict[int, int]  # recipe -> runs with no partner in the reference


def compare(recipes: Sequence[Recipe], metrics: Sequence[str], reference: int = 0) -> Comparison:
    if not 0 <= reference < len(recipes):
        raise ConfigError(f"--reference {reference}: there are {len(recipes)} recipes (0..{len(recipes) - 1})")
    children = [child for recipe in recipes for child in recipe.children]
    keys = {child.run_id: recipe.pair_key(child) for recipe in recipes for child in recipe.children}
    reference_keys = {keys[child.run_id] for child in recipes[reference].children}
    summaries, differences, unpaired = {}, {}, {}
    for recipe in recipes:
        summaries[recipe.index] = {
            metric: summarise_values([child.metrics.get(metric) for child in recipe.children]) for metric in metrics
        }
        differences[recipe.index] = {
            metric: paired_differences(children, recipe.index, reference, metric=metric, key=lambda child: keys[child.run_id])
            for metric in metrics
        }
        unpaired[recipe.index] = sum(keys[child.run_id] not in reference_keys for child in recipe.children)
    return Comparison(list(recipes), tuple(metrics), reference, summaries, differences, unpaired)


def format_comparison(comparison: Comparison, requirements: Sequence[Requirement] = ()) -> str:
    """One row per recipe: runs, mean ± sd (se) per metric, paired difference to the reference in points
    (± se, pairs), and one line per requirement saying whether each candidate meets it."""

    def points(item: MetricSummary) -> str:
        if item.mean is None:
            return "n/a"
        se = "" if item.stderr is None else f" ± {100 * item.stderr:.1f}"
        return f"{100 * item.mean:+.1f}{se} ({item.n} pairs)"

    headers = ["#", "recipe", "runs", *comparison.metrics, *(f"Δ {metric}, points" for metric in comparison.metrics)]
    rows = []
    for recipe in comparison.recipes:
        is_reference = recipe.index == comparison.reference
        unpaired = comparison.unpaired[recipe.index]
        rows.append(
            [
                str(recipe.index),
                recipe.label + (" [reference]" if is_reference else ""),
                str(len(recipe.children)) + (f" ({unpaired} unpaired)" if unpaired and not is_reference else ""),
                *(summary_cell(comparison.summaries[recipe.index][metric]) for metric in comparison.metrics),
                *(
                    "" if is_reference else points(comparison.differences[recipe.index][metric])
                    for metric in comparison.metrics
                ),
            ]
        )
    lines = [text_table(headers, rows)]
    for requirement in requirements:
        if requirement.metric not in comparison.metrics:
            raise ConfigError(
                f"--require {requirement.metric}: not a compared metric ({', '.join(comparison.metrics)}); add --metric {requirement.metric}"
            )
        verdicts = [
            f"#{recipe.index} {'yes' if requirement.holds(comparison.differences[recipe.index][requirement.metric]) else 'no'}"
            for recipe in comparison.recipes
            if recipe.index != comparison.reference
        ]
        lines.append(
            f"{requirement.metric} >= {100 * requirement.min_gain:+.1f} points and > 2 se over #{comparison.reference}: "
            + ", ".join(verdicts)
        )
    return "\n".join(lines)


def format_per_fold(comparison: Comparison) -> str:
    """Rows (partition seed, fold, training seed); a column per recipe with each metric and the best epoch."""
    cells: dict[tuple, dict[int, str]] = {}
    for recipe in comparison.recipes:
        for child in recipe.children:
            key = recipe.pair_key(child)
            values = " / ".join("n/a" if child.metrics.get(m) is None else f"{child.metrics[m]:.3f}" for m in comparison.metrics)
            cells.setdefault(key, {})[recipe.index] = values + ("" if child.best_epoch is None else f" ({child.best_epoch})")
    headers = ["partition", "fold", "seed", *(f"#{recipe.index}" for recipe in comparison.recipes)]
    rows = [
        [str(key[0]), "-" if key[1] is None else str(key[1]), str(key[2]), *(cells[key].get(r.index, "") for r in comparison.recipes)]
        for key in sorted(cells, key=lambda key: (key[0], -1 if key[1] is None else key[1], key[2]))
    ]
    return f"per fold ({' / '.join(comparison.metrics)}, best epoch):\n" + text_table(headers, rows)
