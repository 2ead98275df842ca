"""MLflow I/O: default store, champion/challenger aliases, finding the joint model in a download."""

from __future__ import annotations

import json

import mlflow
import pytest

from conflict_events import tracking
from conflict_events.errors import ModelError

METRIC = "best_dev_mean_f1"


def register_run(name: str, value: float | None) -> str:
    """A run with the metric (or none) and a model version of it; returns the version."""
    client = mlflow.MlflowClient()
    experiment_id = tracking.ensure_experiment("alias-tests")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        if value is not None:
            mlflow.log_metric(METRIC, value)
        mlflow.log_text("placeholder", "model/MLmodel")
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException:
        pass
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return str(version.version)


def aliases(name: str) -> dict[str, str]:
    return {alias: str(version) for alias, version in mlflow.MlflowClient().get_registered_model(name).aliases.items()}


def test_the_default_store_is_sqlite_in_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri() == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert tracking.tracking_uri() == "http://tracking:5000"


def test_local_experiments_keep_artifacts_under_mlartifacts(mlflow_tracking, tmp_path):
    tracking.configure_tracking()
    experiment_id = tracking.ensure_experiment("my experiment")
    location = mlflow.MlflowClient().get_experiment(experiment_id).artifact_location
    assert location == (tmp_path / "mlartifacts" / "my_experiment").as_uri()
    assert tracking.ensure_experiment("my experiment") == experiment_id


def test_first_model_becomes_champion_a_worse_one_challenger_a_better_one_champion(mlflow_tracking):
    tracking.configure_tracking()
    first = register_run("m", 0.5)
    decision = tracking.assign_alias("m", first, METRIC, 0.5)
    assert (decision.alias, decision.champion_version, decision.reason) == ("champion", None, "no champion yet")

    worse = register_run("m", 0.4)
    decision = tracking.assign_alias("m", worse, METRIC, 0.4)
    assert decision.alias == "challenger"
    assert (decision.champion_version, decision.champion_value) == (first, 0.5)
    assert aliases("m") == {"champion": first, "challenger": worse}

    tie = register_run("m", 0.5)
    assert tracking.assign_alias("m", tie, METRIC, 0.5).alias == "challenger"

    better = register_run("m", 0.6)
    decision = tracking.assign_alias("m", better, METRIC, 0.6)
    assert decision.alias == "champion"
    assert decision.reason == "better than the champion"
    assert aliases("m")["champion"] == better
    assert "m v4 -> champion (best_dev_mean_f1: new 0.6000, champion 0.5000 (v1)" in decision.summary()


def test_a_champion_whose_run_lacks_the_metric_is_replaced(mlflow_tracking):
    tracking.configure_tracking()
    old = register_run("n", None)
    tracking.assign_alias("n", old, "other_metric", 0.9)
    new = register_run("n", 0.1)
    decision = tracking.assign_alias("n", new, METRIC, 0.1)
    assert decision.alias == "champion"
    assert decision.reason == f"the champion's run has no metric '{METRIC}'"


def test_the_joint_model_is_found_inside_a_downloaded_pyfunc(tmp_path):
    (tmp_path / "artifacts" / "joint_model").mkdir(parents=True)
    (tmp_path / "artifacts" / "joint_model" / "joint_config.json").write_text(json.dumps({}))
    assert tracking.find_joint_model_dir(tmp_path) == tmp_path / "artifacts" / "joint_model"
    other = tmp_path / "elsewhere"
    (other / "artifacts" / "best").mkdir(parents=True)
    (other / "artifacts" / "best" / "joint_config.json").write_text("{}")
    assert tracking.find_joint_model_dir(other) == other / "artifacts" / "best"
    assert tracking.find_joint_model_dir(tmp_path / "artifacts" / "joint_model" / "none") is None


def test_an_unknown_registered_model_is_a_model_error(mlflow_tracking):
    with pytest.raises(ModelError, match="cannot download 'models:/missing@champion'"):
        tracking.download_joint_model("models:/missing@champion")
