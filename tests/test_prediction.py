"""The shared prediction step: the fast path (tokenise once, token-budget batches, Viterbi skipped when
the arg-max is already valid) must give the same predictions as the plain path (one text at a time,
no padding, full constrained Viterbi); the faster decode (Viterbi in plain floats, each text tokenised once
for windowing and the model) gives exactly what the plain one gave."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conflict_events.alignment import decode_bio, viterbi_decode, viterbi_decode_numpy
from conflict_events.config import load_config
from conflict_events.model import HeadSettings, build_joint_model
from conflict_events.prediction import (
    EncodedTexts,
    decode_actor_spans,
    merge_windows,
    padded_batch,
    predict_texts,
    predict_windowed,
    text_windows,
    texts_windows,
    token_budget_batches,
    window_size,
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


def plan_cost(lengths, batches, overhead):
    return sum(len(batch) * max(lengths[i] for i in batch) + overhead for batch in batches)


def test_a_long_text_is_not_padded_into_a_batch_of_short_ones_when_a_batch_of_its_own_is_cheaper():
    lengths = [3, 3, 10, 3, 3]
    batches = list(token_budget_batches(lengths, max_batch=4, max_tokens=100, batch_overhead=1))
    # Filling the first batch to four items would pad three short texts to 10 sub-words (40 + 3 + 2).
    assert batches == [[2], [0, 1, 3, 4]]
    assert plan_cost(lengths, batches, overhead=1) == 10 + 12 + 2


def valid_cuts_of(order, lengths, max_batch, max_tokens):
    """Every way of cutting ``order`` into consecutive batches within the limits (brute force)."""
    if not order:
        yield []
        return
    for size in range(1, min(max_batch, len(order)) + 1):
        head = order[:size]
        if size > 1 and size * max(lengths[i] for i in head) > max_tokens:
            break
        for rest in valid_cuts_of(order[size:], lengths, max_batch, max_tokens):
            yield [head] + rest


@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=9),
    max_batch=st.integers(1, 5),
    max_tokens=st.integers(1, 120),
    overhead=st.integers(0, 30),
)
@settings(max_examples=300, deadline=None, database=None)
def test_the_batches_are_the_cheapest_cut_of_the_length_order_within_the_limits(lengths, max_batch, max_tokens, overhead):
    batches = list(token_budget_batches(lengths, max_batch, max_tokens, batch_overhead=overhead))
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    assert [i for batch in batches for i in batch] == order
    assert batches in list(valid_cuts_of(order, lengths, max_batch, max_tokens))
    cheapest = min(plan_cost(lengths, cut, overhead) for cut in valid_cuts_of(order, lengths, max_batch, max_tokens))
    assert plan_cost(lengths, batches, overhead) == cheapest


def test_empty_input_gives_no_predictions_and_empty_text_gives_no_actors(loaded):
    assert predict_texts(loaded, []) == []
    (empty,) = predict_texts(loaded, [""])
    assert empty.actors == () and len(empty.events) == 1


# --- the faster decode gives what the plain one gave --------------------------------------------------
FEW_HUNDRED = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
TAG_SETS = [
    ["O", "B-S", "I-S", "B-T", "I-T", "B-R", "I-R"],
    ["O", "B-A", "I-A"],
    ["B-A", "O", "I-A", "B-B", "I-B"],  # O not first: ties must still go to the lowest index
    ["I-A", "B-A", "O"],  # an I- tag first: where every score is -inf, numpy's argmax points at it
]


@st.composite
def log_prob_tables(draw):
    tags = draw(st.sampled_from(TAG_SETS))
    length = draw(st.integers(0, 40))
    # Few distinct values, so equal scores (ties) are common; -inf where a probability underflowed.
    values = st.sampled_from([0.0, -0.0, -0.5, -1.0, -1.5, -2.0, -7.25, -30.0, -np.inf])
    table = np.array(draw(st.lists(st.lists(values, min_size=len(tags), max_size=len(tags)), min_size=length, max_size=length)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return table.reshape(length, len(tags)).astype(dtype), tags


@FEW_HUNDRED
@given(log_prob_tables())
def test_viterbi_in_plain_floats_decodes_as_the_numpy_recursion(case):
    log_probs, tags = case
    assert viterbi_decode(log_probs, tags) == viterbi_decode_numpy(log_probs, tags)


def test_viterbi_decodes_as_the_numpy_recursion_on_random_log_probabilities():
    rng = np.random.default_rng(1)
    for _ in range(500):
        tags = TAG_SETS[int(rng.integers(len(TAG_SETS)))]
        logits = rng.normal(scale=3.0, size=(int(rng.integers(1, 60)), len(tags))).astype(np.float32)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        assert viterbi_decode(log_probs, tags) == viterbi_decode_numpy(log_probs, tags)


def test_viterbi_leaves_nan_and_infinite_scores_to_the_numpy_recursion():
    tags = TAG_SETS[0]
    log_probs = np.full((5, len(tags)), -1.0)
    log_probs[2, 3] = np.nan
    log_probs[3, 2] = np.inf
    assert viterbi_decode(log_probs, tags) == viterbi_decode_numpy(log_probs, tags)


def test_actor_spans_are_the_same_from_offsets_as_a_list_or_an_array(loaded):
    rng = np.random.default_rng(2)
    offsets = [(0, 0)] + [(3 * i, 3 * i + 2) for i in range(15)] + [(0, 0)]
    for _ in range(100):
        logits = rng.normal(size=(len(offsets), len(loaded.label_schema.bio_tags))) * 3
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        assert decode_actor_spans(log_probs, offsets, loaded) == decode_actor_spans(log_probs, np.array(offsets), loaded)


def windowed_as_before(loaded, texts, batch_size, overlap):
    """predict_windowed as it was: each text's windows found alone, every window text tokenised again."""
    size = window_size(loaded)
    windows = [text_windows(loaded.tokenizer, text, size, overlap) for text in texts]
    flat = [(row, window) for row, text_windows_ in enumerate(windows) for window in text_windows_]
    predictions = predict_texts(loaded, [texts[row][w.char_start : w.char_end] for row, w in flat], batch_size)
    parts = [[] for _ in texts]
    for (row, window), prediction in zip(flat, predictions):
        parts[row].append((window, prediction))
    return [merge_windows(text_parts, loaded) for text_parts in parts]


def test_windowed_prediction_tokenising_each_text_once_gives_the_predictions_it_gave(loaded):
    """Batches are unchanged, so scores are equal to the bit, not only close."""
    words = "Rebels attacked the police station in Srinagar , and troops fired back at them".split()
    # Around the window's size (max_length 64: 62 sub-words): shorter, at it, longer, much longer.
    texts = sample_texts() + [" ".join(words * n)[: 5 * n + 40] for n in range(1, 60, 3)] + ["", " ".join(words * 12)]
    assert max(len(loaded.tokenizer(text)["input_ids"]) for text in texts) > 2 * loaded.settings.max_length
    expected, got = windowed_as_before(loaded, texts, 8, 8), predict_windowed(loaded, texts, 8, 8)
    assert [as_tuples(p) for p in got] == [as_tuples(p) for p in expected]
    for new, old in zip(got, expected):
        assert np.array_equal(new.event_scores, old.event_scores)
        assert [a.score for a in new.actors] == [a.score for a in old.actors]


def test_windows_found_together_are_those_found_one_text_at_a_time(loaded):
    texts = [" ".join(["word"] * n) for n in (1, 30, 61, 62, 63, 64, 130, 400)]
    size = window_size(loaded)
    assert texts_windows(loaded.tokenizer, texts, size, 8) == [text_windows(loaded.tokenizer, t, size, 8) for t in texts]


def test_padded_batches_hold_each_texts_ids_then_padding_and_a_mask_of_its_length():
    import torch

    encoded = EncodedTexts([[101, 7, 8, 102], [101, 102], [101, 5, 6, 7, 8, 9, 102]], [[], [], []])
    input_ids, attention_mask = padded_batch(encoded, [2, 0, 1], pad_id=0)
    assert input_ids.dtype == attention_mask.dtype == torch.long
    assert input_ids.tolist() == [[101, 5, 6, 7, 8, 9, 102], [101, 7, 8, 102, 0, 0, 0], [101, 102, 0, 0, 0, 0, 0]]
    assert attention_mask.tolist() == [[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5]
