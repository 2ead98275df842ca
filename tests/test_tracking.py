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


def test_an_alias_moves_with_its_history_and_no_version_holds_both(mlflow_tracking):
    tracking.configure_tracking()
    first, second = register_run("m", 0.5), register_run("m", 0.4)
    tracking.set_version_alias("m", first, "champion", "no champion yet")
    tracking.set_version_alias("m", second, "challenger", "not better")
    assert aliases("m") == {"champion": first, "challenger": second}
    tracking.promote_version("m", second, "reviewed by hand")
    assert aliases("m") == {"champion": second}  # its challenger alias went with the promotion
    moves = [(move["alias"], move["version"], move["previous"]) for move in tracking.alias_history("m")]
    assert moves == [("champion", first, None), ("challenger", second, None), ("champion", second, first)]
    assert tracking.rollback_champion("m", "regression in production") == (second, first)
    assert aliases("m") == {"champion": first}
    assert tracking.alias_history("m")[-1]["reason"] == "rollback from v2: regression in production"


def test_rollback_without_an_earlier_champion_is_an_error(mlflow_tracking):
    tracking.configure_tracking()
    only = register_run("n", 0.5)
    tracking.set_version_alias("n", only, "champion", "no champion yet")
    with pytest.raises(ModelError, match="'n' v1 has no earlier champion in its alias history"):
        tracking.rollback_champion("n", "why not")


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
