"""Continued masked-LM pretraining on the tiny random encoder: text reading, masking, the loss going down,
MLflow logging and registration, and the registered encoder used by a training config."""

from __future__ import annotations

import json

import mlflow
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from conflict_events.cli import app
from conflict_events.config import PretrainConfig
from conflict_events.errors import DataError
from conflict_events.training.pretrain import (
    IGNORE_INDEX,
    load_mlm_model,
    mlm_batch,
    mlm_loss,
    read_segments,
    tokenize_segments,
)
from conflict_events.training.testing import tiny_config, tiny_config_mapping, write_tiny_corpus

runner = CliRunner()

ARTICLE = (
    "Police fired tear gas at protesters in the city on Monday. "
    "Rebel fighters attacked an army convoy near the border.\n\n"
    "The government said it would hold talks with the opposition. "
    "Officials said. "  # too short: dropped
    "Police fired tear gas at protesters in the city on Monday."  # repeat: dropped
)


def write_texts(directory):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "articles.tsv").write_text(f'"{ARTICLE}"\t0\t1\n', encoding="utf-8")
    (directory / "notes.txt").write_text("Kenya sent food aid to Somalia after the floods.\n", encoding="utf-8")
    (directory / "more.jsonl").write_text(
        json.dumps({"body": "The UN envoy condemned the attack on the camp."}) + "\n" + json.dumps({"body": 3}) + "\n",
        encoding="utf-8",
    )
    return directory


@pytest.fixture()
def tokenizer(tiny_encoder_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_encoder_dir))


def test_segments_are_sentences_without_short_ones_and_repeats(tmp_path, tokenizer):
    folder = write_texts(tmp_path / "text")
    segments, stats = read_segments([folder], PretrainConfig(text_field="body"), tokenizer)
    assert segments == [
        "Police fired tear gas at protesters in the city on Monday.",
        "Rebel fighters attacked an army convoy near the border.",
        "The government said it would hold talks with the opposition.",
        "The UN envoy condemned the attack on the camp.",
        "Kenya sent food aid to Somalia after the floods.",
    ]
    assert (stats.documents, stats.bad_records, stats.short_sentences_dropped, stats.duplicates_dropped) == (3, 1, 1, 1)
    assert [entry["path"] for entry in stats.files] == [str(folder / name) for name in ("articles.tsv", "more.jsonl", "notes.txt")]
    assert all(len(entry["sha256"]) == 64 for entry in stats.files)


def test_chunks_pack_sentences_up_to_max_length(tmp_path, tokenizer):
    folder = write_texts(tmp_path / "text")
    settings = PretrainConfig(unit="chunk", max_length=32, text_field="body")
    chunks, _ = read_segments([folder / "articles.tsv"], settings, tokenizer)
    assert chunks == [
        "Police fired tear gas at protesters in the city on Monday. Rebel fighters attacked an army convoy near the border.",
        "The government said it would hold talks with the opposition.",
    ]
    tokens, split = tokenize_segments(tokenizer, chunks, 32)
    assert split == 0 and all(len(ids) <= 32 for ids in tokens.input_ids)
    # a segment longer than max_length is cut into several sequences, not truncated
    tokens, split = tokenize_segments(tokenizer, [chunks[0]], 16)
    assert split == 1 and len(tokens) == 2


def test_no_text_is_an_error(tmp_path, tokenizer):
    (tmp_path / "short.txt").write_text("Too short.\n", encoding="utf-8")
    with pytest.raises(DataError, match="no text to pretrain on"):
        read_segments([tmp_path / "short.txt"], PretrainConfig(), tokenizer)


def test_masking_never_touches_special_tokens_and_is_seeded(tokenizer):
    tokens, _ = tokenize_segments(tokenizer, ["Police fired tear gas.", "Talks.", "Rebels attacked the convoy near the border town."], 32)
    first = mlm_batch(tokens, [0, 1, 2], tokenizer, 0.15, torch.Generator().manual_seed(3))
    again = mlm_batch(tokens, [0, 1, 2], tokenizer, 0.15, torch.Generator().manual_seed(3))
    assert torch.equal(first["input_ids"], again["input_ids"]) and torch.equal(first["labels"], again["labels"])
    labels = first["labels"]
    special = torch.isin(labels, torch.tensor(tokenizer.all_special_ids))
    assert not special.any()
    assert ((labels != IGNORE_INDEX).sum(dim=1) >= 1).all()  # at least one masked sub-word per row
    assert (labels[first["attention_mask"] == 0] == IGNORE_INDEX).all()
    everything = mlm_batch(tokens, [0, 1, 2], tokenizer, 0.999, torch.Generator().manual_seed(3))
    masked = everything["labels"] != IGNORE_INDEX
    assert (everything["input_ids"][masked] == tokenizer.mask_token_id).float().mean() > 0.6


def test_pretraining_lowers_the_mlm_loss_and_registers_an_encoder_training_can_use(tiny_encoder_dir, tmp_path, mlflow_tracking):
    folder = write_texts(tmp_path / "text")
    mapping = tiny_config_mapping(tmp_path / "data", tiny_encoder_dir, tmp_path / "ckpt")
    mapping["pretrain"] = {
        "epochs": 8, "batch_size": 2, "learning_rate": 3e-3, "warmup_ratio": 0.0, "max_length": 32,
        "heldout_fraction": 0.0, "text_field": "body", "seed": 5,
        "output_dir": str(tmp_path / "encoder"), "registered_encoder": "tiny-encoder",
    }
    config_path = tmp_path / "pretrain.yaml"
    config_path.write_text(yaml.safe_dump(mapping))
    settings = PretrainConfig(**mapping["pretrain"])

    before_model = load_mlm_model(str(tiny_encoder_dir))
    segments, _ = read_segments([folder], settings, before_model.tokenizer)
    tokens, _ = tokenize_segments(before_model.tokenizer, segments, 32)
    before = mlm_loss(before_model.model, tokens, before_model.tokenizer, 0.15, seed=99)

    result = runner.invoke(app, ["pretrain", "--config", str(config_path), "--text", str(folder), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "masked-LM head: initialised fresh: the encoder has no masked-LM head" in result.output
    assert "encoder: models:/tiny-encoder/1" in result.output

    after_model = load_mlm_model(str(tmp_path / "encoder"))
    assert not after_model.fresh_head  # the saved directory keeps the head for another round
    after = mlm_loss(after_model.model, tokens, after_model.tokenizer, 0.15, seed=99)
    assert after < before - 0.5, (before, after)

    (run,) = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    client = mlflow.MlflowClient()
    assert run.data.params["pretrain.mlm_probability"] == "0.15"
    assert run.data.tags["run.kind"] == "pretrain"
    assert run.data.tags["pretrain.mlm_head"].startswith("initialised fresh")
    assert len(client.get_metric_history(run.info.run_id, "train_mlm_loss")) == 8
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "encoder")}
    assert {"encoder/config.json", "encoder/model.safetensors", "encoder/tokenizer.json"} <= artifacts
    stats = json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/data/text_stats.json"))
    assert stats["segments"] == 5 and stats["train_segments"] == 5
    version = client.get_model_version("tiny-encoder", "1")
    assert version.run_id == run.info.run_id

    # A training config names the registered encoder; the joint model starts from the pretrained weights.
    from conflict_events.model import HeadSettings, build_joint_model

    write_tiny_corpus(tmp_path / "data")
    for uri in ("models:/tiny-encoder/1", "models:/tiny-encoder/latest"):
        config = tiny_config(tmp_path / "data", uri, tmp_path / "ckpt", training={"epochs": 1, "max_steps_per_epoch": 1})
        joint = build_joint_model(config.model.encoder, config.label_schema, HeadSettings(max_length=32))
        saved = load_file(str(tmp_path / "encoder" / "model.safetensors"))
        embedding = joint.model.encoder.embeddings.word_embeddings.weight
        assert torch.equal(embedding, saved["bert.embeddings.word_embeddings.weight"])

    from conflict_events.training.trainer import train

    trained = train(config, show_progress=False)
    trained_run = mlflow.get_run(trained.run_id)
    assert trained_run.data.params["model.encoder"] == "models:/tiny-encoder/latest"
