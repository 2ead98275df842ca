"""Sub-word masking as augmentation (``training.token_masking_probability``): training inputs lose words
at random, labels and lengths stay (training/data.py TokenMasker, training/plugins.py TokenMasking)."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from transformers import AutoTokenizer

from conflict_events.errors import ConfigError
from conflict_events.model import build_configured_model
from conflict_events.training.data import TokenMasker, TrainingFeature
from conflict_events.training.plugins import TokenMasking
from conflict_events.training.recipe import training_recipe
from conflict_events.training.testing import tiny_config, write_tiny_corpus
from conflict_events.training.trainer import train

CLS, SEP, MASK = 101, 102, 103


def feature(length: int) -> TrainingFeature:
    """[CLS] w1 .. wn [SEP] with a B-/I- span on w1 w2 and an event target, of an auxiliary corpus (task 1):
    masking, unlike actor swap, applies to the features of every corpus."""
    ids = (CLS, *range(2000, 2000 + length), SEP)
    labels = (-100, 1, 2, *([0] * (length - 2)), -100)
    return TrainingFeature(ids, (0,) * len(ids), 3, labels, task=1, example=7)


def test_masking_replaces_sub_words_and_keeps_labels_length_and_special_tokens():
    original = feature(10)
    masked = TokenMasker(1.0, MASK, [CLS, SEP, MASK])(original, np.random.default_rng(0))
    assert masked.input_ids == (CLS, *([MASK] * 10), SEP)
    assert (masked.role_labels, masked.event_target, masked.token_type_ids) == (
        original.role_labels, original.event_target, original.token_type_ids
    )
    assert (masked.task, masked.example) == (original.task, original.example)


def test_about_the_given_share_of_sub_words_is_masked():
    masker = TokenMasker(0.15, MASK, [CLS, SEP])
    rng = np.random.default_rng(1)
    masked = [masker(feature(98), rng) for _ in range(200)]  # 19,600 maskable sub-words
    share = sum(f.input_ids.count(MASK) for f in masked) / (200 * 98)
    assert share == pytest.approx(0.15, abs=0.01)  # 4 standard deviations of a binomial share
    assert all(f.input_ids[0] == CLS and f.input_ids[-1] == SEP for f in masked)


def test_an_epoch_masks_the_same_way_every_time_it_runs_and_epochs_differ():
    """A resumed epoch must see the batches its first try saw: the stream is the seed and the epoch."""
    batch = [feature(30) for _ in range(4)]

    def epoch(number: int) -> list[TrainingFeature]:
        plugin = TokenMasking(TokenMasker(0.2, MASK, [CLS, SEP]), seed=13)
        plugin.on_epoch_start(number)
        return plugin.on_batch(batch, number)

    assert epoch(2) == epoch(2)
    assert epoch(2) != epoch(3)


@pytest.fixture()
def corpus_dir(tmp_path):
    write_tiny_corpus(tmp_path / "data")
    return tmp_path / "data"


def test_the_recipe_masks_last_with_the_tokenizers_mask_token(tiny_encoder_dir, corpus_dir, tmp_path):
    config = tiny_config(
        corpus_dir, tiny_encoder_dir, tmp_path / "ckpt", training={"actor_swap_probability": 0.3, "token_masking_probability": 0.5}
    )
    loaded = build_configured_model(config.model, config.label_schema)
    recipe = training_recipe(config, loaded, [feature(5)])
    assert [plugin.name for plugin in recipe.plugins] == ["actor_swap", "token_masking"]
    masker = recipe.plugins[-1].augment
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    assert masker.mask_id == tokenizer.mask_token_id
    assert set(masker.special_ids) == set(tokenizer.all_special_ids)


def test_an_encoder_without_a_mask_token_is_refused_by_name(tiny_encoder_dir, corpus_dir, tmp_path):
    config = tiny_config(corpus_dir, tiny_encoder_dir, tmp_path / "ckpt", training={"token_masking_probability": 0.1})
    loaded = build_configured_model(config.model, config.label_schema)
    loaded.tokenizer.mask_token = None
    with pytest.raises(ConfigError, match="training.token_masking_probability"):
        training_recipe(config, loaded, [feature(5)])


def test_a_run_with_masking_trains_and_logs_the_technique(tiny_encoder_dir, corpus_dir, tmp_path, mlflow_tracking):
    config = tiny_config(
        corpus_dir, tiny_encoder_dir, tmp_path / "ckpt",
        training={"epochs": 1, "max_steps_per_epoch": 2, "token_masking_probability": 0.15},
        tracking={"register_model": False},
    )
    result = train(config, show_progress=False)
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert run.data.tags["training.plugins"] == "token_masking"
    assert run.data.tags["training.plugin.token_masking.probability"] == "0.15"
    assert run.data.params["training.token_masking_probability"] == "0.15"
