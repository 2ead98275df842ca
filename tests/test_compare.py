"""Comparing recipes across sweeps (issue 6's yardstick): runs pair by partition, fold and seed; the
paired differences decide whether a candidate beats the reference by a margin and by > 2 se; and
`conflict-events compare` reads finished sweeps from the tracking store."""

from __future__ import annotations

import mlflow
import pytest
from typer.testing import CliRunner

from conflict_events.cli import app
from conflict_events.errors import ConfigError
from conflict_events.training.compare import (
    Recipe,
    Requirement,
    compare,
    format_comparison,
    parse_recipe_reference,
    parse_requirement,
)
from conflict_events.training.sweep import ChildResult, MetricSummary
from tests.test_sweep import write_config

runner = CliRunner()


def recipe(index: int, event_by_fold: dict[int, float], seed_base: int = 13, partition: int = 13) -> Recipe:
    children = tuple(
        ChildResult(index, 0, fold, seed_base + fold, f"r{index}-{fold}", {"event_macro_f1": score}, 5)
        for fold, score in event_by_fold.items()
    )
    return Recipe(index, f"sweep{index}", 0, {"x": index}, children, {child.run_id: partition for child in children})


def test_recipes_pair_by_fold_so_fold_difficulty_cancels():
    plain = recipe(0, {0: 0.95, 1: 0.90, 2: 0.85})
    better = recipe(1, {0: 0.97, 1: 0.92, 2: 0.88})  # +2, +2, +3 points on the same folds
    comparison = compare([plain, better], ["event_macro_f1"])
    difference = comparison.differences[1]["event_macro_f1"]
    assert difference.n == 3 and difference.mean == pytest.approx(0.07 / 3)
    assert difference.stderr == pytest.approx(0.01 / 3, rel=1e-6)  # sd of (2, 2, 3) points / sqrt(3)
    assert comparison.summaries[1]["event_macro_f1"].std > 0.04  # unpaired, the folds' spread would swamp it
    assert comparison.unpaired[1] == 0


def test_runs_with_another_seed_or_partition_are_left_unpaired_and_counted():
    plain = recipe(0, {0: 0.95, 1: 0.90})
    other_seeds = recipe(1, {0: 0.97, 1: 0.92}, seed_base=100)
    other_partition = recipe(2, {0: 0.97, 1: 0.92}, partition=14)
    comparison = compare([plain, other_seeds, other_partition], ["event_macro_f1"])
    for index in (1, 2):
        assert comparison.differences[index]["event_macro_f1"].n == 0 and comparison.unpaired[index] == 2
    assert "2 (2 unpaired)" in format_comparison(comparison)


def test_a_requirement_needs_the_margin_and_more_than_two_standard_errors():
    requirement = Requirement("event_macro_f1", 0.02)
    assert requirement.holds(MetricSummary(mean=0.025, std=0.01, stderr=0.005, n=4))
    assert not requirement.holds(MetricSummary(mean=0.019, std=0.001, stderr=0.0005, n=4))  # below the margin
    assert not requirement.holds(MetricSummary(mean=0.03, std=0.04, stderr=0.02, n=4))  # 1.5 se: noise
    assert not requirement.holds(MetricSummary(mean=0.05, std=None, stderr=None, n=1))  # one pair: no se


def test_the_verdict_line_names_each_candidate():
    comparison = compare([recipe(0, {0: 0.90, 1: 0.90}), recipe(1, {0: 0.93, 1: 0.925}), recipe(2, {0: 0.91, 1: 0.95})], ["event_macro_f1"])
    text = format_comparison(comparison, [parse_requirement("event_macro_f1=0.02")])
    assert text.splitlines()[-1] == "event_macro_f1 >= +2.0 points and > 2 se over #0: #1 yes, #2 no"
    with pytest.raises(ConfigError, match="--require actor_f1: not a compared metric"):
        format_comparison(comparison, [parse_requirement("actor_f1=0.03")])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (":1", "recipe ':1' must look like SWEEP_RUN_ID or SWEEP_RUN_ID:COMBINATION"),
        ("abc:x", "recipe 'abc:x': the combination after ':' must be a number (got 'x')"),
    ],
)
def test_bad_recipe_references_are_named(text, message):
    with pytest.raises(ConfigError) as raised:
        parse_recipe_reference(text)
    assert str(raised.value) == message


def test_recipe_references_and_requirements_parse():
    assert parse_recipe_reference("abc") == ("abc", None) and parse_recipe_reference("abc:2") == ("abc", 2)
    assert parse_requirement("actor_f1=0.03") == Requirement("actor_f1", 0.03)
    with pytest.raises(ConfigError, match="--require 'actor_f1' must look like metric=min_gain"):
        parse_requirement("actor_f1")


def test_compare_reads_two_cross_validated_sweeps_and_pairs_their_folds(tiny_encoder_dir, tmp_path, mlflow_tracking):
    config = write_config(tmp_path, tiny_encoder_dir)
    for grid in ("training.learning_rate=1e-3", "training.learning_rate=3e-2,1e-2"):
        swept = runner.invoke(app, ["sweep", "--config", str(config), "--folds", "2", "--grid", grid])
        assert swept.exit_code == 0, swept.output
    parents = sorted(
        (run for run in mlflow.search_runs(experiment_names=["tiny"], output_format="list") if run.data.tags.get("sweep") == "parent"),
        key=lambda run: run.info.start_time,
    )
    first, second = (run.info.run_id for run in parents)

    result = runner.invoke(app, ["compare", first, f"{second}:1", "--require", "actor_f1=0.03", "--per-fold"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "[reference]" in lines[2] and "training.learning_rate=1e-3" in lines[2]
    assert "training.learning_rate=1e-2" in lines[3] and "(2 pairs)" in lines[3]
    assert lines[4].startswith("actor_f1 >= +3.0 points and > 2 se over #0: #1 ")
    assert "per fold (event_macro_f1 / actor_f1, best epoch):" in result.output

    missing = runner.invoke(app, ["compare", first, f"{second}:7"])
    assert missing.exit_code == 2
    assert f"recipe '{second}:7': sweep {second} has no finished runs of combination 7 (it has 0, 1)" in missing.output
    misspelt = runner.invoke(app, ["compare", first, "--metric", "event_f1"])
    assert misspelt.exit_code == 2
    assert f"recipe '{first}': no run logged best_dev_event_f1; the best-epoch dev metrics there are: actor_f1," in misspelt.output
    child = next(run for run in mlflow.search_runs(experiment_names=["tiny"], output_format="list") if run.data.tags.get("sweep") == "child")
    not_a_sweep = runner.invoke(app, ["compare", child.info.run_id])
    assert not_a_sweep.exit_code == 2 and "is not a sweep (no tag sweep=parent)" in not_a_sweep.output
