"""Unlabeled news in distillation (training/unlabeled.py): the archive is read, split, filtered and sampled
deterministically; the sentences join training with no gold labels (so only the soft targets train on them)
and never dev; config mistakes name the key and the file; a tiny `distill` run with an unlabeled archive."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from transformers import AutoTokenizer
from conftest import REPO_ROOT, requires_shared_data
from typer.testing import CliRunner

from conflict_events.cli import app
from conflict_events.config import load_config
from conflict_events.corpora import load_corpus
from conflict_events.errors import ConfigError, DataError
from conflict_events.model import HeadSettings, LossSettings, build_joint_model, load_joint_model, save_joint_model
from conflict_events.prediction import predict_texts
from conflict_events.schema import EventExample
from conflict_events.training import distill as distill_module
from conflict_events.training.data import collate, encode_examples
from conflict_events.training.distill import DistillationLoss
from conflict_events.training.ensemble import EnsembleModel, load_ensemble
from conflict_events.training.evaluation_data import TRAINED_ON_FILE, text_digest
from conflict_events.training.testing import tiny_config, tiny_config_mapping, write_tiny_corpus
from conflict_events.training.trainer import Splits, load_splits
from conflict_events.training.unlabeled import (
    labeled_examples,
    pseudo_label,
    read_unlabeled,
    unlabeled_files,
    with_unlabeled,
)

runner = CliRunner()
NEWS = Path(__file__).parent / "resources" / "unlabeled_news.tsv"
# What the archive holds (tests/resources/unlabeled_news.tsv): 5 rows, one with an empty article; 11 sentences
# of which "Curfew." is short, one runs past 32 sub-words, "Rebel fighters attacked The army near the
# border." is a sentence of the tiny corpus and one repeats an earlier article's first sentence.
KEPT = [
    "Police said protesters blocked the main road in Lucknow on Sunday.",
    "Officials met the protest leaders.",
    "The district magistrate ordered schools to close for two days.",
    "Villagers fled to the nearby town after the clashes.",
    "Two men were arrested in connection with the violence.",
    "A peace committee of local elders appealed for calm in the old city.",
    "Shops reopened on Wednesday morning.",
]


def news_config(tmp_path: Path, encoder="unused", **entry):
    data = tmp_path / "data"
    write_tiny_corpus(data)
    (data / "news").mkdir(exist_ok=True)
    shutil.copy(NEWS, data / "news" / "archive.tsv")
    return tiny_config(data, encoder, tmp_path / "ckpt", distill={"unlabeled": [{"path": "news/archive.tsv", **entry}]})


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder_dir):
    return AutoTokenizer.from_pretrained(tiny_encoder_dir)


def test_the_archive_is_read_split_filtered_and_counted(tmp_path, tokenizer):
    config = news_config(tmp_path, max_sentences=None)
    examples, stats = read_unlabeled(config, tokenizer, labeled_examples(load_splits(config)))
    assert [example.text for example in examples] == KEPT
    (source,) = stats.sources
    assert (source.documents, source.bad_records, source.sentences) == (4, 1, 11)
    assert (source.short, source.long, source.repeats, source.in_labeled_data, source.kept, source.sampled) == (1, 1, 1, 1, 7, 7)
    assert stats.params()["unlabeled.sampled"] == 7 and stats.params()["unlabeled.0.in_labeled_data"] == 1
    assert all(example.event is None and example.actors is None for example in examples)
    assert examples[1].id == "unlabeled:archive-1:1" and examples[1].source.line == 1
    assert stats.summary() == (
        "11 sentences read from 4 documents (1 unreadable records); dropped 1 short, 1 long, 1 repeats, "
        "1 in the labeled data; 7 kept, 7 sampled into training, 0 of them pseudo-labeled"
    )


def test_the_sample_is_seeded_and_keeps_archive_order(tmp_path, tokenizer):
    labeled = labeled_examples(load_splits(news_config(tmp_path)))

    def sample(seed: int) -> list[str]:
        examples, stats = read_unlabeled(news_config(tmp_path, max_sentences=4, seed=seed), tokenizer, labeled)
        assert stats.sources[0].kept == 7 and stats.sources[0].sampled == 4
        return [example.text for example in examples]

    first = sample(3)
    assert sample(3) == first
    assert first == [text for text in KEPT if text in first]  # archive order
    assert {tuple(sample(seed)) for seed in range(4, 10)} - {tuple(first)}  # other seeds draw other sentences


def test_a_dev_or_test_sentence_in_the_archive_is_never_taken(tmp_path, tokenizer):
    config = news_config(tmp_path, max_sentences=None)
    splits = load_splits(config)
    # The archive's sentences as the corpus's dev and test: none of them may then be taken.
    held_out = [EventExample(id=f"held-{i}", text=text.upper(), event="neutral") for i, text in enumerate(KEPT)]
    splits = Splits(splits.train, held_out[:4], held_out[4:])
    with pytest.raises(DataError, match="no sentence left to distil on"):
        read_unlabeled(config, tokenizer, labeled_examples(splits))


def test_the_sentences_join_train_only(tmp_path, tokenizer):
    config = news_config(tmp_path)
    splits = load_splits(config)
    examples, _ = read_unlabeled(config, tokenizer, labeled_examples(splits))
    combined = with_unlabeled(splits, examples)
    assert combined.train == [*splits.train, *examples]
    assert combined.dev == splits.dev and combined.test == splits.test
    assert not {example.text for example in examples} & {example.text for example in combined.dev}
    # A cross-validation fold: the sentences join the pool and the fold's training rows.
    fold = Splits(splits.train[:5], splits.dev, None, pool=splits.train, train_rows=list(range(5)))
    joined = with_unlabeled(fold, examples)
    assert joined.train == [*splits.train[:5], *examples] and [joined.pool[row] for row in joined.train_rows] == joined.train


def teacher_and_student(tiny_encoder_dir, schema):
    torch.manual_seed(1)
    teacher = build_joint_model(str(tiny_encoder_dir), schema, HeadSettings(max_length=32))
    torch.manual_seed(2)
    student = build_joint_model(str(tiny_encoder_dir), schema, HeadSettings(max_length=32))
    return teacher, student


def test_only_the_soft_targets_train_on_unlabeled_and_class_only_sentences(tmp_path, tiny_encoder_dir, tokenizer):
    config = news_config(tmp_path, max_sentences=None)
    schema = config.label_schema
    teacher, student = teacher_and_student(tiny_encoder_dir, schema)
    examples, _ = read_unlabeled(config, tokenizer, labeled_examples(load_splits(config)))
    settings = LossSettings()
    special = tokenizer.all_special_ids

    def losses(batch_examples):
        features = encode_examples(batch_examples, tokenizer, schema, 32)
        batch = collate(features, tokenizer.pad_token_id, multilabel=False)
        objective = DistillationLoss(EnsembleModel([teacher.model]).eval(), 0.5, 2.0, special, settings)
        with torch.no_grad():
            gold = student.model(**batch, loss_settings=settings)
            mixed = objective.joint_output(student.model.eval(), batch)
        return gold, mixed, objective

    gold, mixed, objective = losses(examples)
    # no gold label on either head: the supervised loss is zero, the distillation loss is alpha * soft > 0
    assert float(gold.loss) == 0.0 and float(gold.event_loss) == 0.0 and float(gold.role_loss) == 0.0
    assert float(mixed.event_loss) > 0 and float(mixed.role_loss) > 0
    assert len(objective._cache) == len(examples)  # one teacher pass per sentence, cached

    # CAMEO's class-only sentences (an event label, no actor layer): no gold role loss, teachers' role targets
    class_only = [dataclasses.replace(example, event="neutral") for example in examples]
    gold, mixed, _ = losses(class_only)
    assert float(gold.role_loss) == 0.0 and float(gold.event_loss) > 0
    assert float(mixed.role_loss) > 0


def test_pseudo_labels_are_the_teachers_confident_classes(tmp_path, tiny_encoder_dir, tokenizer):
    config = news_config(tmp_path, max_sentences=None)
    teacher, _ = teacher_and_student(tiny_encoder_dir, config.label_schema)
    directory = tmp_path / "teacher"
    save_joint_model(teacher, directory)
    ensemble = load_ensemble([str(directory)])
    examples, stats = read_unlabeled(config, tokenizer, labeled_examples(load_splits(config)))
    predictions = predict_texts(ensemble, [example.text for example in examples])
    labeled = pseudo_label(examples, ensemble, 1e-6, 8, stats)
    assert [example.event for example in labeled] == [prediction.events[0] for prediction in predictions]
    assert stats.sources[0].pseudo_labeled == len(examples)
    confident = sorted(float(prediction.event_scores.max()) for prediction in predictions)[3]
    stats.sources[0].pseudo_labeled = 0
    labeled = pseudo_label(examples, ensemble, confident, 8, stats)
    assert sum(example.event is not None for example in labeled) == stats.sources[0].pseudo_labeled == len(examples) - 3
    assert all(example.actors is None for example in labeled)


def test_a_missing_archive_names_the_key_and_the_path(tmp_path, tiny_encoder_dir, mlflow_tracking):
    config = news_config(tmp_path)
    config = config.model_copy(update={"distill": config.distill.model_copy(update={"unlabeled": [
        config.distill.unlabeled[0], config.distill.unlabeled[0].model_copy(update={"path": "news/missing.tsv"})
    ]})})
    resolved = Path(config.data.root) / "news" / "missing.tsv"
    message = (
        f"distill.unlabeled[1].path 'news/missing.tsv': no such file or directory ({resolved}; "
        "paths are relative to data.root)"
    )
    with pytest.raises(ConfigError) as raised:
        unlabeled_files(config)
    assert str(raised.value) == message
    # through the command, before any teacher is loaded (this one does not exist either)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    result = runner.invoke(app, ["distill", "--config", str(path), "--teacher", str(tmp_path / "no-teacher")])
    assert result.exit_code == 2
    assert f"error: {message}" in result.output


def test_config_mistakes_name_the_file_and_the_key(tmp_path):
    mapping = tiny_config_mapping(tmp_path, "unused", tmp_path / "ckpt")
    path = tmp_path / "bad.yaml"

    def error(distill: dict) -> str:
        path.write_text(yaml.safe_dump({**mapping, "distill": distill}))
        with pytest.raises(ConfigError) as raised:
            load_config(path)
        return str(raised.value)

    assert error({"unlabeled": [{"pth": "news.tsv"}]}) == (
        f"{path}: invalid configuration\n  missing required key 'distill.unlabeled.0.path'\n  unknown key 'distill.unlabeled.0.pth'"
    )
    assert error({"pseudo_label_threshold": 0.9}) == (
        f"{path}: invalid configuration\n  distill: Value error, distill.pseudo_label_threshold labels the sentences "
        "of distill.unlabeled, which is empty"
    )
    mapping["labels"]["task"] = "multilabel"
    assert "distill.pseudo_label_threshold is for multiclass event labels; labels.task is multilabel" in error(
        {"unlabeled": [{"path": "news.tsv"}], "pseudo_label_threshold": 0.9}
    )


def test_distill_with_an_unlabeled_archive(tmp_path, tiny_encoder_dir, mlflow_tracking, monkeypatch):
    config = news_config(tmp_path, tiny_encoder_dir, max_sentences=5, seed=3)
    schema = config.label_schema
    teachers = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        directory = tmp_path / f"teacher-{seed}"
        save_joint_model(build_joint_model(str(tiny_encoder_dir), schema, HeadSettings(max_length=32)), directory)
        teachers.append(str(directory))
    mapping = config.model_dump(mode="json")
    mapping["training"].update(epochs=1, max_steps_per_epoch=2)
    mapping["tracking"].update(register_model=False)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(mapping))
    seen: list[Splits] = []
    real_train = distill_module.train

    def spy(config, **kwargs):
        seen.append(kwargs["splits"])
        return real_train(config, **kwargs)

    monkeypatch.setattr(distill_module, "train", spy)
    result = runner.invoke(
        app, ["distill", "--config", str(path), "--teacher", teachers[0], "--teacher", teachers[1], "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "unlabeled text: 11 sentences read from 4 documents (1 unreadable records); dropped 1 short, 1 long, "
        "1 repeats, 1 in the labeled data; 7 kept, 5 sampled into training, 0 of them pseudo-labeled"
    ) in result.output

    corpus = load_corpus(config)
    (splits,) = seen
    added = splits.train[len(corpus.train):]
    assert splits.train[: len(corpus.train)] == list(corpus.train) and len(added) == 5
    assert all(example.id.startswith("unlabeled:") and example.text in KEPT for example in added)
    assert splits.dev == list(corpus.dev)
    trained_on = json.loads((tmp_path / "ckpt" / "best" / TRAINED_ON_FILE).read_text())
    assert trained_on["sentences"] == len(corpus.train) + 5
    assert {text_digest(example.text) for example in added} <= set(trained_on["text_digests"])

    (run,) = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    params = run.data.params
    assert (params["unlabeled.sentences"], params["unlabeled.kept"], params["unlabeled.sampled"]) == ("11", "7", "5")
    assert yaml.safe_load(params["distill.unlabeled"])[0]["path"] == "news/archive.tsv"
    student = load_joint_model(tmp_path / "ckpt" / "best")
    assert student.model.encoder.config.num_hidden_layers == 2


@requires_shared_data()
def test_the_example_config_names_the_indiapoliceevents_archive():
    config = load_config(REPO_ROOT / "configs" / "cameo_distill.yaml", data_root=str(REPO_ROOT.parent / "shared" / "data" / "conflibert"))
    (files,) = unlabeled_files(config)
    assert [(file.parent.name, file.name) for file in files] == [("IndiaPoliceEvents_docs", "train.tsv")]
    assert config.distill.unlabeled[0].max_sentences == 3000
