"""R-Drop (``training.consistency_weight``): the batch runs twice under different dropout masks and the
divergence between the two predictions joins the loss; with no dropout the two agree and nothing changes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conflict_events.labels import ActorRole, EventClass, LabelSchema
from conflict_events.model import HeadSettings, build_joint_model
from conflict_events.schema import ActorSpan, EventExample
from conflict_events.model import LossSettings
from conflict_events.training.consistency import ConsistencyLoss, symmetric_bernoulli_kl, symmetric_kl
from conflict_events.training.objectives import SupervisedJointLoss
from conflict_events.training.data import collate, encode_examples
from conflict_events.training.testing import tiny_config, write_tiny_corpus
from conflict_events.training.trainer import train

SCHEMA = LabelSchema(
    event_classes=(EventClass(0, "calm"), EventClass(1, "fight")),
    actor_roles=(ActorRole("S", "source"), ActorRole("T", "target")),
)
EXAMPLES = [
    EventExample("a", "Rebels attacked the army.", event="fight", actors=[ActorSpan("S", 0, 6), ActorSpan("T", 16, 24)]),
    EventExample("b", "The envoy said all was calm in the capital.", event="calm"),
    EventExample("c", "Police detained protesters.", actors=[ActorSpan("S", 0, 6)]),
]


def joint_batch(tiny_encoder_dir, dropout: float):
    torch.manual_seed(0)
    loaded = build_joint_model(str(tiny_encoder_dir), SCHEMA, HeadSettings(max_length=32, dropout=dropout))
    for module in loaded.model.modules():  # the encoder's dropout layers too
        if isinstance(module, torch.nn.Dropout):
            module.p = dropout
    features = encode_examples(EXAMPLES, loaded.tokenizer, SCHEMA, 32)
    return loaded.model, collate(features, loaded.tokenizer.pad_token_id, multilabel=False)


def test_symmetric_kl_is_zero_for_equal_predictions_and_the_mean_of_both_directions_otherwise():
    generator = torch.Generator().manual_seed(0)
    first, second = torch.randn(4, 5, generator=generator), torch.randn(4, 5, generator=generator)
    assert torch.allclose(symmetric_kl(first, first), torch.zeros(4), atol=1e-7)
    one_way = F.kl_div(F.log_softmax(second, -1), F.log_softmax(first, -1), log_target=True, reduction="none").sum(-1)
    other_way = F.kl_div(F.log_softmax(first, -1), F.log_softmax(second, -1), log_target=True, reduction="none").sum(-1)
    assert torch.allclose(symmetric_kl(first, second), (one_way + other_way) / 2, atol=1e-6)
    assert torch.allclose(symmetric_kl(first, second), symmetric_kl(second, first))


def test_multilabel_divergence_treats_each_class_as_a_yes_no_decision():
    first, second = torch.tensor([[2.0, -1.0]]), torch.tensor([[2.0, 1.0]])
    # class 0 agrees; class 1 is sigmoid(-1) vs sigmoid(1), i.e. two-way logits [-1, 0] vs [1, 0]
    expected = symmetric_kl(torch.tensor([[-1.0, 0.0]]), torch.tensor([[1.0, 0.0]])) / 2
    assert torch.allclose(symmetric_bernoulli_kl(first, second), expected, atol=1e-6)


def test_without_dropout_both_copies_agree_and_the_loss_is_the_supervised_loss(tiny_encoder_dir):
    model, batch = joint_batch(tiny_encoder_dir, dropout=0.0)
    model.train()
    plain = model(**batch)
    regularised = ConsistencyLoss(SupervisedJointLoss(LossSettings()), multilabel=False, weight=5.0).joint_output(model, batch)
    assert regularised.event_logits.shape[0] == 2 * len(EXAMPLES)
    assert torch.allclose(regularised.loss, plain.loss, atol=1e-5)
    assert torch.allclose(regularised.event_loss, plain.event_loss, atol=1e-5)


def test_with_dropout_the_disagreement_adds_to_the_loss_in_proportion_to_the_weight(tiny_encoder_dir):
    model, batch = joint_batch(tiny_encoder_dir, dropout=0.3)
    model.train()

    def extra_loss(weight: float) -> float:
        torch.manual_seed(1)  # same dropout masks for both weights
        output = ConsistencyLoss(SupervisedJointLoss(LossSettings()), multilabel=False, weight=weight).joint_output(model, batch)
        return (output.loss - (output.event_loss + output.role_loss)).item()

    assert extra_loss(0.0) == pytest.approx(0.0, abs=1e-6)
    assert extra_loss(1.0) > 0
    assert extra_loss(2.0) == pytest.approx(2 * extra_loss(1.0), rel=1e-4)


def test_training_with_consistency_logs_the_weight_and_learns(tmp_path, tiny_encoder_dir, mlflow_tracking):
    write_tiny_corpus(tmp_path / "data")
    config = tiny_config(
        tmp_path / "data", tiny_encoder_dir, tmp_path / "out",
        training={"consistency_weight": 1.0, "epochs": 3}, tracking={"register_model": False, "log_model": False},
    )
    result = train(config, show_progress=False)
    import mlflow

    run = mlflow.get_run(result.run_id)
    assert run.data.params["training.consistency_weight"] == "1.0"
    losses = [entry["train_loss"] for entry in result.history]
    assert losses[-1] < losses[0]
