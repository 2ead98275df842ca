"""benchmarks/unlabeled_folds.py on the tiny corpus: per fold a teacher and two students from it, paired by
seed on the same fold; the JSON holds every fold's dev and shifted dev figures, their paired differences and
the summary over folds; a resumed invocation keeps what was measured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
import yaml
from conftest import load_benchmark

from conflict_events.errors import ConfigError
from conflict_events.training.testing import tiny_config_mapping, write_tiny_corpus

NEWS = Path(__file__).parent / "resources" / "unlabeled_news.tsv"
METRICS = ("event_macro_f1", "actor_f1", "shifted_event_macro_f1", "shifted_actor_f1", "mean_f1", "shifted_mean_f1")


@pytest.fixture(scope="module")
def measurement():
    return load_benchmark("unlabeled_folds")


@pytest.fixture()
def recipe_files(tmp_path, tiny_encoder_dir):
    """A teacher config and a student config with a 7-sentence unlabeled archive, on the tiny corpus."""
    data = tmp_path / "data"
    write_tiny_corpus(data)
    (data / "news").mkdir()
    shutil.copy(NEWS, data / "news" / "archive.tsv")
    mapping = tiny_config_mapping(data, tiny_encoder_dir, tmp_path / "ckpt")
    mapping["training"]["max_steps_per_epoch"] = 2
    teacher, student = tmp_path / "teacher.yaml", tmp_path / "student.yaml"
    teacher.write_text(yaml.safe_dump(mapping))
    mapping["distill"] = {"unlabeled": [{"path": "news/archive.tsv", "max_sentences": 100}]}
    student.write_text(yaml.safe_dump(mapping))
    return teacher, student


def arguments(teacher: Path, student: Path, output: Path, *extra: str) -> list[str]:
    return [
        "--teacher-config", str(teacher), "--student-config", str(student), "--folds", "2", "--teacher-epochs", "1",
        "--student-epochs", "1", "--unlabeled-sentences", "4", "--output", str(output), *extra,
    ]


def test_two_folds_give_paired_differences_on_dev_and_shifted_dev(measurement, recipe_files, tmp_path, mlflow_tracking, capsys):
    output = tmp_path / "out" / "folds.json"
    assert measurement.main(arguments(*recipe_files, output)) == 0
    data = json.loads(output.read_text())
    assert data["complete"] is True and [record["fold"] for record in data["folds"]] == [0, 1]
    for record in data["folds"]:
        with_news, plain = record["arms"]["unlabeled"], record["arms"]["plain"]
        # the pair differs only in the unlabeled sentences: same fold, same seed (the sweep's seed of that fold)
        assert with_news["seed"] == plain["seed"] == record["teacher"]["seed"] == 7 + record["fold"]
        assert (with_news["unlabeled_sentences"], plain["unlabeled_sentences"]) == (4, 0)
        for key in METRICS:
            assert with_news[key] is not None and plain[key] is not None, key
            assert record["difference"][key] == pytest.approx(with_news[key] - plain[key])
    assert data["folds"][0]["dev_examples"] + data["folds"][1]["dev_examples"] == 40  # every example held out once
    for key in METRICS:
        differences = [record["difference"][key] for record in data["folds"]]
        summary = data["summary"]["difference"][key]
        assert summary["n"] == 2 and summary["mean"] == pytest.approx(sum(differences) / 2)
        assert summary["std"] == pytest.approx(abs(differences[0] - differences[1]) / 2**0.5)
        assert summary["stderr"] == pytest.approx(summary["std"] / 2**0.5)

    printed = capsys.readouterr().out
    assert "unlabeled - plain (paired)" in printed and "shifted actor F1" in printed
    runs = mlflow.search_runs(experiment_names=["unlabeled-folds"], output_format="list")
    arms = sorted((run.data.tags["unlabeled_folds.arm"], run.data.tags.get("unlabeled_folds.fold", "")) for run in runs)
    assert arms == [("plain", "0"), ("plain", "1"), ("summary", ""), ("teacher", "0"), ("teacher", "1"), ("unlabeled", "0"), ("unlabeled", "1")]
    assert {run.data.tags["unlabeled_folds.id"] for run in runs} == {data["id"]}
    assert mlflow.MlflowClient().search_registered_models() == []
    assert not any(Path(tmp_path / "ckpt" / "unlabeled-folds").rglob("*.safetensors"))  # checkpoints deleted

    # A resumed invocation keeps both folds and trains nothing.
    assert measurement.main(arguments(*recipe_files, output, "--resume")) == 0
    assert json.loads(output.read_text())["folds"] == data["folds"]
    assert len(mlflow.search_runs(experiment_names=["unlabeled-folds"], output_format="list")) == len(runs) + 1


def test_resuming_with_other_settings_and_folds_that_do_not_exist_are_refused(measurement, recipe_files, tmp_path):
    output = tmp_path / "folds.json"
    output.write_text(json.dumps({"id": "x", "settings": {"folds": 5}, "folds": []}))
    with pytest.raises(ConfigError, match="--resume: .*folds.json was written with other settings"):
        measurement.main(arguments(*recipe_files, output, "--resume"))
    with pytest.raises(ConfigError, match=r"--folds-to-run \[2\]: there are 2 folds \(0..1\)"):
        measurement.main(arguments(*recipe_files, tmp_path / "new.json", "--folds-to-run", "2"))
