"""Ensembles and distillation on the tiny random encoder: averaging, the compatibility checks, the mixed
loss, and `conflict-events distill` training and registering one student."""

from __future__ import annotations

import copy

import mlflow
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from conflict_events.cli import app
from conflict_events.errors import ModelError
from conflict_events.model import HeadSettings, LossSettings, build_joint_model, load_joint_model, save_joint_model
from conflict_events.prediction import predict_texts
from conflict_events.training.data import collate, encode_examples
from conflict_events.training.distill import DistillationLoss
from conflict_events.training.ensemble import EnsembleModel, load_ensemble
from conflict_events.training.testing import tiny_config, tiny_config_mapping, write_tiny_corpus

runner = CliRunner()
TEXTS = ["Rebel fighters attacked The army near the border.", "Kenya sent food aid to Somalia.", "Police said it was calm.", ""]


def make_teacher(directory, encoder_dir, seed, tmp_path, edit_tokenizer=None, **label_changes):
    torch.manual_seed(seed)
    config = tiny_config(tmp_path / "data", encoder_dir, tmp_path / "ckpt")
    schema = config.label_schema
    if label_changes:
        config = tiny_config(tmp_path / "data", encoder_dir, tmp_path / "ckpt", labels=label_changes)
        schema = config.label_schema
    loaded = build_joint_model(str(encoder_dir), schema, HeadSettings(max_length=32))
    if edit_tokenizer is not None:
        edit_tokenizer(loaded.tokenizer)
    save_joint_model(loaded, directory)
    return directory


@pytest.fixture()
def teachers(tiny_encoder_dir, tmp_path):
    first = make_teacher(tmp_path / "teacher-a", tiny_encoder_dir, 1, tmp_path)
    second = make_teacher(tmp_path / "teacher-b", tiny_encoder_dir, 2, tmp_path)
    return str(first), str(second)


def test_an_ensemble_of_two_identical_teachers_predicts_like_the_teacher(teachers):
    single = load_joint_model(teachers[0])
    ensemble = load_ensemble([teachers[0], teachers[0]])
    expected = predict_texts(single, TEXTS)
    got = predict_texts(ensemble, TEXTS)
    for one, two in zip(expected, got):
        np.testing.assert_allclose(two.event_scores, one.event_scores, rtol=1e-5, atol=1e-6)
        assert two.events == one.events
        assert [(s.role, s.char_start, s.char_end) for s in two.actors] == [(s.role, s.char_start, s.char_end) for s in one.actors]


def test_the_ensemble_averages_event_and_role_probabilities(teachers):
    first, second = load_joint_model(teachers[0]), load_joint_model(teachers[1])
    ensemble = EnsembleModel([first.model, second.model]).eval()
    encoded = first.tokenizer(TEXTS[:3], padding=True, return_tensors="pt")
    inputs = {key: encoded[key] for key in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        a, b = first.model(**inputs), second.model(**inputs)
        event, role = ensemble.probabilities(**inputs, temperature=2.0)
        output = ensemble(**inputs)
    expected_event = (torch.softmax(a.event_logits / 2, -1) + torch.softmax(b.event_logits / 2, -1)) / 2
    expected_role = (torch.softmax(a.role_logits / 2, -1) + torch.softmax(b.role_logits / 2, -1)) / 2
    torch.testing.assert_close(event, expected_event)
    torch.testing.assert_close(role, expected_role)
    mean_at_1 = (torch.softmax(a.event_logits, -1) + torch.softmax(b.event_logits, -1)) / 2
    torch.testing.assert_close(torch.softmax(output.event_logits, -1), mean_at_1)


def test_teachers_with_another_tokenizer_or_other_labels_are_refused(teachers, tiny_encoder_dir, tmp_path):
    other_tokenizer = make_teacher(
        tmp_path / "teacher-c", tiny_encoder_dir, 3, tmp_path, edit_tokenizer=lambda tokenizer: tokenizer.add_tokens(["kismayoq"])
    )
    with pytest.raises(ModelError) as raised:
        load_ensemble([teachers[0], str(other_tokenizer)])
    assert str(raised.value) == (
        f"teacher '{other_tokenizer}' uses another tokenizer than teacher '{teachers[0]}' (vocabularies differ "
        "(30522 vs 30523 entries)); an ensemble averages per sub-word, so all teachers need the same tokenizer"
    )
    other_labels = make_teacher(
        tmp_path / "teacher-d", tiny_encoder_dir, 4, tmp_path, actor_roles=[{"tag": "S", "name": "source"}]
    )
    with pytest.raises(ModelError, match="has other labels than"):
        load_ensemble([teachers[0], str(other_labels)])


def test_the_distillation_loss_mixes_gold_and_soft_targets(teachers, tmp_path):
    teacher = load_joint_model(teachers[0])
    write_tiny_corpus(tmp_path / "data")
    config = tiny_config(tmp_path / "data", "unused", tmp_path / "ckpt")
    from conflict_events.corpora import load_corpus

    examples = load_corpus(config).train[:6]
    features = encode_examples(examples, teacher.tokenizer, teacher.label_schema, 32)
    batch = collate(features, teacher.tokenizer.pad_token_id, multilabel=False)
    ensemble = EnsembleModel([teacher.model]).eval()
    student = copy.deepcopy(teacher.model).eval()  # identical to the teacher: the soft loss is zero
    special = teacher.tokenizer.all_special_ids
    settings = LossSettings()
    def distilled(alpha: float):
        return DistillationLoss(ensemble, alpha=alpha, temperature=2.0, special_ids=special, loss_settings=settings)

    with torch.no_grad():
        hard = student(**batch, loss_settings=settings)
        pure_soft = distilled(1.0).joint_output(student, batch)
        pure_gold = distilled(0.0).joint_output(student, batch)
        half = distilled(0.5).joint_output(student, batch)
    assert float(pure_soft.loss) == pytest.approx(0.0, abs=1e-5)
    assert float(pure_gold.loss) == pytest.approx(float(hard.loss), rel=1e-5)
    assert float(half.loss) == pytest.approx(0.5 * float(hard.loss), rel=1e-4, abs=1e-5)
    # the teachers only give targets: the loss's gradient reaches the student and never a teacher
    student.zero_grad()
    distilled(0.5)(student.train(), batch).total.backward()
    assert any(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in ensemble.parameters())


def test_distill_trains_and_registers_one_student(teachers, tiny_encoder_dir, tmp_path, mlflow_tracking):
    write_tiny_corpus(tmp_path / "data")
    mapping = tiny_config_mapping(tmp_path / "data", tiny_encoder_dir, tmp_path / "checkpoints")
    mapping["training"].update(epochs=2, max_steps_per_epoch=2)
    mapping["distill"] = {"alpha": 0.7, "temperature": 3.0}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(mapping))
    result = runner.invoke(
        app, ["distill", "--config", str(path), "--teacher", teachers[0], "--teacher", teachers[1], "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "registry: tiny-model v1 -> champion" in result.output
    assert "teachers (2):" in result.output and "ensemble dev:" in result.output

    (run,) = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    assert run.data.tags["run.kind"] == "distill"
    assert run.data.params["distill.alpha"] == "0.7" and run.data.params["distill.temperature"] == "3.0"
    assert yaml.safe_load(run.data.params["distill.teachers"]) == list(teachers)
    assert {"ensemble_dev_event_macro_f1", "ensemble_dev_selection_score", "best_dev_mean_f1", "train_loss"} <= set(run.data.metrics)
    student = load_joint_model("models:/tiny-model@champion")
    # one model of the configured size, like any trained model
    assert student.model.encoder.config.num_hidden_layers == 2
    assert len(predict_texts(student, TEXTS)) == len(TEXTS)


def test_distill_trains_a_shallower_student_than_its_teachers(teachers, tiny_encoder_dir, tmp_path, mlflow_tracking):
    write_tiny_corpus(tmp_path / "data")
    mapping = tiny_config_mapping(tmp_path / "data", tiny_encoder_dir, tmp_path / "checkpoints")
    mapping["model"]["encoder_layers"] = [1]  # the top one of the 2 layers the teachers have
    mapping["training"].update(epochs=1, max_steps_per_epoch=2)
    mapping["tracking"].update(register_model=False, log_model=False)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(mapping))
    result = runner.invoke(
        app, ["distill", "--config", str(path), "--teacher", teachers[0], "--teacher", teachers[1], "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert load_joint_model(teachers[0]).model.encoder.config.num_hidden_layers == 2
    student = load_joint_model(tmp_path / "checkpoints" / "best")
    assert student.model.encoder.config.num_hidden_layers == 1
    assert len(predict_texts(student, TEXTS)) == len(TEXTS)
    (run,) = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    assert run.data.tags["run.kind"] == "distill" and yaml.safe_load(run.data.params["model.encoder_layers"]) == [1]


def test_distill_without_teachers_is_a_clear_error(tiny_encoder_dir, tmp_path, mlflow_tracking):
    write_tiny_corpus(tmp_path / "data")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_mapping(tmp_path / "data", tiny_encoder_dir, tmp_path / "ckpt")))
    result = runner.invoke(app, ["distill", "--config", str(path)])
    assert result.exit_code == 2
    assert "error: distillation needs at least one teacher: --teacher URI (repeatable) or distill.teachers" in result.output
