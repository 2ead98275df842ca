"""The shared prediction step: the fast path (tokenise once, token-budget batches, Viterbi skipped when
the arg-max is already valid) must give the same predictions as the plain path (one text at a time,
no padding, full constrained Viterbi)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conflict_events.alignment import decode_bio
from conflict_events.config import load_config
from conflict_events.model import HeadSettings, build_joint_model
from conflict_events.prediction import (
    decode_actor_spans,
    predict_texts,
    token_budget_batches,
)
from conftest import REPO_ROOT, SAMPLE_DATA


@pytest.fixture(scope="module")
def loaded(tiny_encoder_dir):
    import torch

    torch.manual_seed(3)
    schema = load_config(REPO_ROOT / "configs" / "quickstart.yaml").label_schema
    model = build_joint_model(str(tiny_encoder_dir), schema, HeadSettings(max_length=64))
    # Sharpen the random role head so the arg-max often differs from O and Viterbi has work to do.
    with torch.no_grad():
        model.model.role_head.weight.mul_(40.0)
    return model


def sample_texts() -> list[str]:
    lines = (SAMPLE_DATA / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines]


def as_tuples(prediction):
    return prediction.events, [(a.role, a.char_start, a.char_end) for a in prediction.actors]


def test_fast_batched_path_equals_one_text_at_a_time_on_the_bundled_data(loaded):
    texts = sample_texts()
    fast = predict_texts(loaded, texts, batch_size=64, max_batch_tokens=1024)
    plain = [predict_texts(loaded, [text], batch_size=1)[0] for text in texts]
    assert [as_tuples(p) for p in fast] == [as_tuples(p) for p in plain]
    assert any(p.actors for p in fast), "the test model should predict some actors"
    for f, p in zip(fast, plain):
        np.testing.assert_allclose(f.event_scores, p.event_scores, atol=1e-5)


def test_skipping_viterbi_when_the_argmax_is_valid_changes_nothing(loaded):
    rng = np.random.default_rng(0)
    bio_tags = loaded.label_schema.bio_tags
    offsets = np.array([(0, 0)] + [(2 * i, 2 * i + 1) for i in range(12)] + [(0, 0)])
    for _ in range(300):
        logits = rng.normal(size=(len(offsets), len(bio_tags))) * 3
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        spans = decode_actor_spans(log_probs, offsets, loaded)
        full = decode_bio(log_probs[1:-1], bio_tags, "viterbi")
        tags = [bio_tags[i] for i in full]
        starts = [i for i, tag in enumerate(tags) if tag.startswith("B-")]
        assert [(s.role, s.char_start) for s in spans] == [(tags[i][2:], 2 * i) for i in starts]


def test_token_budget_batches_cover_every_text_once_within_budget():
    lengths = [5, 40, 12, 12, 3, 60, 7, 33, 20, 1]
    batches = list(token_budget_batches(lengths, max_batch=3, max_tokens=80))
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 80
    longest_first = [lengths[batch[0]] for batch in batches]
    assert longest_first == sorted(longest_first, reverse=True)


def test_empty_input_gives_no_predictions_and_empty_text_gives_no_actors(loaded):
    assert predict_texts(loaded, []) == []
    (empty,) = predict_texts(loaded, [""])
    assert empty.actors == () and len(empty.events) == 1
