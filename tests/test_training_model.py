"""The model contract as the trainer uses it: masked losses, valid BIO decoding, save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conflict_events.alignment import IGNORE_INDEX, decode_bio, is_valid_bio
from conflict_events.labels import ActorRole, EventClass, LabelSchema
from conflict_events.model import HeadSettings, build_joint_model, load_joint_model, save_joint_model
from conflict_events.prediction import predict_texts
from conflict_events.schema import ActorSpan, EventExample
from conflict_events.training.data import collate, encode_examples

SCHEMA = LabelSchema(
    event_classes=(EventClass(0, "calm"), EventClass(1, "fight")),
    actor_roles=(ActorRole("S", "source"), ActorRole("T", "target")),
)


@pytest.fixture()
def loaded(tiny_encoder_dir):
    torch.manual_seed(0)
    return build_joint_model(str(tiny_encoder_dir), SCHEMA, HeadSettings(max_length=32, dropout=0.0))


def head_gradients(loaded, examples):
    features = encode_examples(examples, loaded.tokenizer, SCHEMA, 32)
    batch = collate(features, loaded.tokenizer.pad_token_id, multilabel=False)
    loaded.model.zero_grad(set_to_none=False)
    loaded.model(**batch).loss.backward()
    # A head that got no loss has no gradient at all (None) or an all-zero one.
    return tuple(
        0.0 if head.weight.grad is None else float(head.weight.grad.abs().sum())
        for head in (loaded.model.event_head, loaded.model.role_head)
    )


def test_an_example_without_an_event_label_gives_the_event_head_no_gradient(loaded):
    only_actors = EventExample("a", "Rebels attacked the army.", event=None, actors=[ActorSpan("S", 0, 6)])
    event_grad, role_grad = head_gradients(loaded, [only_actors])
    assert event_grad == 0
    assert role_grad > 0


def test_an_example_without_actor_labels_gives_the_role_head_no_gradient(loaded):
    only_event = EventExample("b", "Rebels attacked the army.", event="fight", actors=None)
    event_grad, role_grad = head_gradients(loaded, [only_event])
    assert event_grad > 0
    assert role_grad == 0


def test_unlabeled_layers_become_ignore_targets(loaded):
    examples = [
        EventExample("a", "Rebels attacked.", event=None, actors=[ActorSpan("S", 0, 6)]),
        EventExample("b", "Rebels attacked.", event="fight", actors=None),
    ]
    first, second = encode_examples(examples, loaded.tokenizer, SCHEMA, 32)
    assert first.event_target == IGNORE_INDEX
    assert SCHEMA.bio_tags[first.role_labels[1]] == "B-S"
    assert second.event_target == 1
    assert set(second.role_labels) == {IGNORE_INDEX}


@pytest.mark.parametrize("method", ["viterbi", "greedy"])
def test_bio_decoding_never_emits_an_invalid_sequence(method):
    rng = np.random.default_rng(0)
    tags = SCHEMA.bio_tags
    for _ in range(300):
        length = int(rng.integers(1, 20))
        logits = rng.normal(scale=3.0, size=(length, len(tags)))
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        decoded = [tags[i] for i in decode_bio(log_probs, tags, method)]
        assert is_valid_bio(decoded), decoded


def test_predicted_spans_from_a_random_model_are_well_formed(loaded):
    with torch.no_grad():
        loaded.model.role_head.bias.copy_(torch.tensor([0.0, 2.0, 2.0, 2.0, 2.0]))
    texts = ["Rebels attacked the army near Goma.", "Police and protesters clashed in Tbilisi on Sunday."]
    for text, prediction in zip(texts, predict_texts(loaded, texts)):
        for span in prediction.actors:
            assert 0 <= span.char_start < span.char_end <= len(text)
            assert span.role in SCHEMA.role_tags


def test_save_and_load_give_identical_predictions(loaded, tmp_path):
    perturb_and_check_round_trip(loaded, tmp_path)


def perturb_and_check_round_trip(loaded, tmp_path):
    with torch.no_grad():
        for parameter in loaded.model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    texts = ["Rebels attacked the army.", "", "The UN envoy met both sides in Geneva on Tuesday."]
    before = predict_texts(loaded, texts)
    after = predict_texts(load_joint_model(save_joint_model(loaded, tmp_path / "model")), texts)
    for first, second in zip(before, after):
        np.testing.assert_array_equal(first.event_scores, second.event_scores)
        assert first.events == second.events
        assert first.actors == second.actors


def attention_pooled(tiny_encoder_dir):
    torch.manual_seed(0)
    return build_joint_model(str(tiny_encoder_dir), SCHEMA, HeadSettings(max_length=32, dropout=0.0, pooling="attention"))


def event_logits(loaded, texts, pad_to=None):
    encoded = loaded.tokenizer(texts, padding="max_length" if pad_to else True, max_length=pad_to, return_tensors="pt")
    with torch.no_grad():
        return loaded.model(encoded["input_ids"], encoded["attention_mask"]).event_logits


def test_attention_pooling_starts_out_as_mean_pooling(loaded, tiny_encoder_dir):
    attention = attention_pooled(tiny_encoder_dir)
    attention.model.load_state_dict(loaded.model.state_dict(), strict=False)  # same encoder and heads
    texts = ["Rebels attacked the army.", "The UN envoy met both sides in Geneva on Tuesday."]
    assert torch.allclose(event_logits(attention, texts), event_logits(loaded, texts), atol=1e-5)


def test_attention_pooling_ignores_padding_once_trained_away_from_the_mean(tiny_encoder_dir):
    attention = attention_pooled(tiny_encoder_dir)
    with torch.no_grad():
        attention.model.pool_scorer.weight.normal_()
    text = ["Rebels attacked the army near the border."]
    assert not torch.allclose(event_logits(attention, text), event_logits(attention_pooled(tiny_encoder_dir), text))
    assert torch.allclose(event_logits(attention, text), event_logits(attention, text, pad_to=32), atol=1e-5)


def test_attention_pooling_survives_save_and_load(tiny_encoder_dir, tmp_path):
    perturb_and_check_round_trip(attention_pooled(tiny_encoder_dir), tmp_path)


def test_an_unknown_pooling_is_refused_by_name(tiny_encoder_dir):
    from conflict_events.errors import ModelError

    with pytest.raises(ModelError, match="unknown pooling 'max'.*mean, attention"):
        build_joint_model(str(tiny_encoder_dir), SCHEMA, HeadSettings(pooling="max"))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_masked_cross_entropy_is_the_mean_over_labeled_positions(label_smoothing, weighted):
    from conflict_events.model import masked_cross_entropy

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 5, generator=generator)
    labels = torch.randint(0, 5, (12,), generator=generator)
    labels[[1, 4, 7]] = IGNORE_INDEX
    weight = torch.rand(5, generator=generator) + 0.5 if weighted else None
    labeled = labels != IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(
        logits[labeled], labels[labeled], weight=weight, label_smoothing=label_smoothing
    )
    assert torch.allclose(masked_cross_entropy(logits, labels, weight, label_smoothing), expected, atol=1e-6)


def test_masked_cross_entropy_of_a_batch_without_labels_is_zero_not_nan():
    from conflict_events.model import masked_cross_entropy

    loss = masked_cross_entropy(torch.randn(4, 3, requires_grad=True), torch.full((4,), IGNORE_INDEX))
    assert loss.item() == 0.0
    loss.backward()
