"""`conflict-events train` and `evaluate`, in-process, on the tiny corpus and encoder, into an isolated
MLflow store."""

from __future__ import annotations

import json

import mlflow
import yaml
from typer.testing import CliRunner

from conflict_events.cli import app
from conflict_events.training.testing import tiny_config_mapping, write_tiny_corpus

runner = CliRunner()


def write_config(tmp_path, encoder_dir):
    write_tiny_corpus(tmp_path / "data")
    mapping = tiny_config_mapping(tmp_path / "data", encoder_dir, tmp_path / "checkpoints")
    mapping["data"]["test"] = {"jsonl": "test.jsonl"}  # configured but absent, like the CAMEO test split
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return path


def test_train_then_evaluate_the_registered_champion(tiny_encoder_dir, tmp_path, mlflow_tracking):
    config = write_config(tmp_path, tiny_encoder_dir)
    result = runner.invoke(app, ["train", "--config", str(config), "--set", "training.epochs=2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "registry: tiny-model v1 -> champion" in result.output
    assert "model: models:/tiny-model/1" in result.output

    client = mlflow.MlflowClient()
    (run,) = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    assert run.data.params["training.epochs"] == "2"
    assert run.data.params["model.max_length"] == "32"
    assert {"train_loss", "dev_event_macro_f1", "dev_actor_f1", "best_dev_mean_f1"} <= set(run.data.metrics)
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
    assert run.data.tags["corpus"] == "tiny"
    assert run.data.tags["promotion.alias"] == "champion"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
    assert {
        "reports/dev_classification_report.txt",
        "reports/dev_confusion_matrix.png",
        "reports/dev_role_report.txt",
        "reports/worst_dev_errors.json",
    } <= artifacts
    stats = json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/data/data_stats.json"))
    assert len(stats["input_files"][0]["sha256"]) == 64
    assert str(client.get_model_version_by_alias("tiny-model", "champion").version) == "1"

    output = tmp_path / "metrics.json"
    result = runner.invoke(
        app,
        ["evaluate", "--model", "models:/tiny-model@champion", "--config", str(config), "--split", "dev", "--output", str(output)],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(output.read_text())
    assert {"event_accuracy", "event_macro_f1", "actor_f1", "actor_precision", "actor_recall", "per_class", "per_role"} <= set(metrics)
    # The same model on the same split gives the numbers training logged for the best checkpoint.
    assert metrics["event_macro_f1"] == run.data.metrics["best_dev_event_macro_f1"]
    assert metrics["decoding"] == "viterbi"  # the model's own (model.decoding when it was trained)

    # --decoding swaps the BIO decoding on the same weights; the event head does not depend on it.
    greedy_file = tmp_path / "greedy.json"
    result = runner.invoke(
        app,
        ["evaluate", "--model", "models:/tiny-model@champion", "--config", str(config), "--split", "dev", "--decoding", "greedy",
         "--output", str(greedy_file)],
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"dev ({metrics['examples']} sentences, sha256:")  # the summary, on stdout
    greedy = json.loads(greedy_file.read_text())
    assert greedy["decoding"] == "greedy" and greedy["event_macro_f1"] == metrics["event_macro_f1"]

    # A second, identical run is not better: it becomes the challenger, the champion stays.
    result = runner.invoke(app, ["train", "--config", str(config), "--set", "training.epochs=2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "registry: tiny-model v2 -> challenger" in result.output
    assert str(client.get_model_version_by_alias("tiny-model", "champion").version) == "1"


def test_evaluate_on_a_missing_split_fails_with_a_clear_message(tiny_encoder_dir, tmp_path, mlflow_tracking):
    config = write_config(tmp_path, tiny_encoder_dir)
    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "no-model"), "--config", str(config), "--split", "test"])
    assert result.exit_code == 2
    assert f"error: split 'test' is not available: test.jsonl not found under {tmp_path / 'data'}" in result.output


def test_evaluate_of_a_directory_that_is_not_a_model(tiny_encoder_dir, tmp_path, mlflow_tracking):
    config = write_config(tmp_path, tiny_encoder_dir)
    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path), "--config", str(config), "--split", "dev"])
    assert result.exit_code == 2
    assert "is not a saved conflict-events model" in result.output
