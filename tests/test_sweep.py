"""Recipe sweeps: grid parsing, the summary statistics, and `conflict-events sweep` end to end on the tiny
corpus and encoder (parent + nested child runs, params, summary, winner; cross-validation folds)."""

from __future__ import annotations

import json
import math
from collections import defaultdict

import mlflow
import pytest
import yaml
from typer.testing import CliRunner

from conflict_events import tracking
from conflict_events.cli import app
from conflict_events.errors import ConfigError
from conflict_events.training.sweep import (
    ChildResult,
    GridAxis,
    combinations,
    parse_grid,
    pick_winner,
    summarise,
    summarise_values,
    with_overrides,
)
from conflict_events.training.testing import tiny_config, tiny_config_mapping, write_tiny_corpus

runner = CliRunner()


def test_grid_values_are_yaml_scalars_like_set():
    assert parse_grid("training.schedule=linear,cosine") == GridAxis("training.schedule", ("linear", "cosine"))
    assert parse_grid("training.class_weighting=true,false").values == (True, False)
    assert parse_grid("training.grad_clip=null,1.0").values == (None, 1.0)
    assert parse_grid("training.epochs=1, 3").values == (1, 3)
    assert parse_grid("a.b=[1, 2],[3]").values == ([1, 2], [3])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("training.epochs", "--grid 'training.epochs' must look like key.path=value1,value2"),
        ("training.epochs=", "--grid 'training.epochs=': no values"),
        ("=1,2", "--grid '=1,2': empty key"),
        ("training.epochs=1,,2", "--grid 'training.epochs=1,,2': the values are not a comma-separated list of YAML scalars"),
    ],
)
def test_bad_grids_are_named(text, message):
    with pytest.raises(ConfigError) as raised:
        parse_grid(text)
    assert str(raised.value) == message


def test_combinations_are_the_cartesian_product_first_axis_slowest():
    axes = [GridAxis("a", (1, 2)), GridAxis("b", ("x", "y"))]
    assert combinations(axes) == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    with pytest.raises(ConfigError, match="--grid key given more than once: a"):
        combinations([GridAxis("a", (1,)), GridAxis("a", (2,))])


def test_overrides_are_validated_with_the_key_named(tmp_path):
    config = tiny_config(tmp_path, "encoder", tmp_path / "ckpt")
    assert with_overrides(config, {"training.learning_rate": "3e-5"}).training.learning_rate == 3e-5
    with pytest.raises(ConfigError, match=r"--grid training.learnig_rate=1: unknown key 'training.learnig_rate' \(did you mean 'training.learning_rate'\?\)"):
        with_overrides(config, {"training.learnig_rate": 1})
    with pytest.raises(ConfigError, match="training.schedule"):
        with_overrides(config, {"training.schedule": "exponential"})


def test_summary_statistics_and_the_winner_is_the_arg_max():
    values = [0.5, 0.7, 0.6]
    summary = summarise_values(values)
    std = math.sqrt(((0.5 - 0.6) ** 2 + (0.7 - 0.6) ** 2 + 0) / 2)
    assert summary.mean == pytest.approx(0.6) and summary.std == pytest.approx(std)
    assert summary.stderr == pytest.approx(std / math.sqrt(3)) and summary.n == 3
    assert summarise_values([0.4]).std is None and summarise_values([None]).mean is None

    def child(combination, score):
        metrics = {"selection_score": score, "event_macro_f1": score, "actor_f1": None}
        return ChildResult(combination, 0, None, 1, "run", metrics, 1)

    grid = [{"x": 0}, {"x": 1}, {"x": 2}]
    children = [child(0, 0.5), child(0, 0.9), child(1, 0.75), child(1, 0.71), child(2, 0.7), child(2, 0.7)]
    summary = summarise(children, grid)
    assert [item.runs for item in summary] == [2, 2, 2]
    assert summary[0].metrics["actor_f1"].mean is None
    assert pick_winner(summary).index == 1  # 0.73 beats 0.70 and 0.70
    tied = summarise([child(0, 0.7), child(1, 0.7)], grid[:2])
    assert pick_winner(tied).index == 0


def write_config(tmp_path, encoder_dir):
    write_tiny_corpus(tmp_path / "data")
    mapping = tiny_config_mapping(tmp_path / "data", encoder_dir, tmp_path / "checkpoints")
    mapping["training"].update(epochs=1, max_steps_per_epoch=2)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return path


def test_sweep_runs_a_parent_and_one_child_per_combination_and_seed(tiny_encoder_dir, tmp_path, mlflow_tracking):
    config = write_config(tmp_path, tiny_encoder_dir)
    result = runner.invoke(
        app,
        ["sweep", "--config", str(config), "--grid", "training.learning_rate=1e-3,3e-2", "--seeds", "2"],
    )
    assert result.exit_code == 0, result.output

    runs = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    parents = [run for run in runs if run.data.tags.get("sweep") == "parent"]
    children = [run for run in runs if run.data.tags.get("sweep") == "child"]
    assert len(runs) == 5 and len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert all(child.data.tags["mlflow.parentRunId"] == parent.info.run_id for child in children)
    assert json.loads(parent.data.params["sweep.grid"]) == {"training.learning_rate": ["1e-3", "3e-2"]}
    assert parent.data.params["sweep.seeds"] == "2"

    settings = sorted(
        (float(run.data.params["training.learning_rate"]), int(run.data.params["training.seed"])) for run in children
    )
    assert settings == [(1e-3, 7), (1e-3, 8), (3e-2, 7), (3e-2, 8)]
    assert all(run.data.params["tracking.register_model"] == "false" for run in children)
    assert not mlflow.MlflowClient().search_registered_models()  # children register nothing

    # The parent's summary is the mean of the children's best dev selection score; the winner is its arg-max.
    scores = defaultdict(list)
    for run in children:
        scores[int(run.data.tags["sweep.combination"])].append(run.data.metrics["best_dev_mean_f1"])
    means = {index: sum(values) / len(values) for index, values in scores.items()}
    for index, mean in means.items():
        assert parent.data.metrics[f"c{index}_mean_f1_mean"] == pytest.approx(mean)
        assert f"c{index}_mean_f1_std" in parent.data.metrics and f"c{index}_event_macro_f1_stderr" in parent.data.metrics
    winner = max(means, key=lambda index: (means[index], -index))
    assert parent.data.tags["sweep.winner_combination"] == str(winner)
    assert parent.data.metrics["winner_mean_f1_mean"] == pytest.approx(means[winner])
    summary = json.loads(mlflow.artifacts.load_text(f"{parent.info.artifact_uri}/sweep/summary.json"))
    assert summary["complete"] and len(summary["children"]) == 4
    assert [row["runs"] for row in summary["summary"]] == [2, 2]
    assert f"winner: combination {winner} (training.learning_rate=" in result.output
    assert "mean_f1 (selection)" in result.output and "±" in result.output
    # the children's checkpoints are scratch space
    assert not (tmp_path / "checkpoints" / "sweep" / parent.info.run_id).exists()


def test_sweep_with_folds_scores_each_child_on_its_held_out_fold(tiny_encoder_dir, tmp_path, mlflow_tracking):
    config = write_config(tmp_path, tiny_encoder_dir)
    result = runner.invoke(app, ["sweep", "--config", str(config), "--folds", "2"])
    assert result.exit_code == 0, result.output
    children = [
        run for run in mlflow.search_runs(experiment_names=["tiny"], output_format="list") if run.data.tags.get("sweep") == "child"
    ]
    assert sorted(run.data.tags["sweep.fold"] for run in children) == ["0", "1"]
    assert sorted(run.data.params["training.seed"] for run in children) == ["7", "8"]  # seed + fold index
    dev_sizes = []
    for run in children:
        stats = json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/data/data_stats.json"))
        assert stats["splits"]["train"]["examples"] + stats["splits"]["dev"]["examples"] == 40
        dev_sizes.append(stats["splits"]["dev"]["examples"])
    assert sum(dev_sizes) == 40  # the held-out folds cover the whole pool once


def test_a_bad_grid_key_fails_before_anything_trains(tiny_encoder_dir, tmp_path, mlflow_tracking):
    config = write_config(tmp_path, tiny_encoder_dir)
    result = runner.invoke(app, ["sweep", "--config", str(config), "--grid", "training.epoch=1,2"])
    assert result.exit_code == 2
    assert "error: --grid training.epoch=1: unknown key 'training.epoch' (did you mean 'training.epochs'?)" in result.output
    tracking.configure_tracking()  # this test's store, not the one an earlier test left configured
    assert not mlflow.search_runs(experiment_names=["tiny"], output_format="list")


def test_only_a_logged_model_can_be_registered(tmp_path):
    config = tiny_config(tmp_path, "encoder", tmp_path / "ckpt")
    with pytest.raises(ConfigError, match="tracking.register_model needs tracking.log_model: true"):
        with_overrides(config, {"tracking.log_model": False})
    assert not with_overrides(config, {"tracking.log_model": False, "tracking.register_model": False}).tracking.log_model


def test_differences_to_the_winner_are_paired_by_seed_and_fold():
    from conflict_events.training.sweep import paired_differences

    def child(combination, repeat, fold, score):
        return ChildResult(combination, repeat, fold, 1, "run", {"selection_score": score}, 1)

    # fold 1 is hard for everyone; combination 1 is 0.02 better on every fold
    children = [child(0, 0, 0, 0.80), child(0, 0, 1, 0.50), child(1, 0, 0, 0.82), child(1, 0, 1, 0.52)]
    paired = paired_differences(children, 0, 1)
    assert paired.mean == pytest.approx(-0.02) and paired.stderr == pytest.approx(0.0, abs=1e-12)
    assert paired_differences(children, 1, 1).mean == 0.0
