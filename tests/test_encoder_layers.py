"""A shallower encoder (`model.encoder_layers`, issue 16): the chosen layers of the pretrained encoder and
nothing else, DistilBERT-style; the model saves and loads as any other; wrong indices are errors naming the
key; the trainer builds it from the config and refuses to resume a run of another depth."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModel, BertConfig, BertModel

from conflict_events.config import load_config
from conflict_events.errors import ConfigError, ModelError
from conflict_events.labels import ActorRole, EventClass, LabelSchema
from conflict_events.model import HeadSettings, build_joint_model, default_encoder_path, load_joint_model, save_joint_model
from conflict_events.prediction import predict_texts
from conflict_events.training.loop import EpochEvent
from conflict_events.training.testing import tiny_config, tiny_config_mapping, write_tiny_corpus
from conflict_events.training.trainer import train

SCHEMA = LabelSchema(
    event_classes=(EventClass(0, "calm"), EventClass(1, "fight")),
    actor_roles=(ActorRole("S", "source"), ActorRole("T", "target")),
)
TEXTS = ["Rebels attacked the army.", "", "The UN envoy met both sides in Geneva on Tuesday."]


@pytest.fixture(scope="module")
def four_layer_encoder_dir(tmp_path_factory):
    """Like conftest's tiny encoder, with 4 layers so that 2 of them can be kept."""
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("four-layer-encoder")
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(directory)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (default_encoder_path() / name).exists():
            shutil.copy(default_encoder_path() / name, directory / name)
    return directory


def shallow_model(encoder_dir, layers=(1, 3)):
    torch.manual_seed(1)
    return build_joint_model(str(encoder_dir), SCHEMA, HeadSettings(max_length=32, dropout=0.0), encoder_layers=list(layers))


def test_the_student_has_the_chosen_layers_with_their_pretrained_weights(four_layer_encoder_dir):
    pretrained = AutoModel.from_pretrained(four_layer_encoder_dir, add_pooling_layer=False)
    student = shallow_model(four_layer_encoder_dir).model.encoder
    assert student.config.num_hidden_layers == 2 and len(student.encoder.layer) == 2
    for position, source in enumerate((1, 3)):
        kept, original = student.encoder.layer[position].state_dict(), pretrained.encoder.layer[source].state_dict()
        assert kept.keys() == original.keys()
        assert all(torch.equal(kept[name], original[name]) for name in kept)
        assert student.encoder.layer[position].attention.self.layer_idx == position
    # the embeddings are the pretrained ones too; only the layer stack is thinned
    for name, tensor in pretrained.embeddings.state_dict().items():
        assert torch.equal(student.embeddings.state_dict()[name], tensor)


def test_the_shallower_model_is_the_stack_of_the_chosen_layers(four_layer_encoder_dir):
    full = build_joint_model(str(four_layer_encoder_dir), SCHEMA, HeadSettings(max_length=32)).model.encoder.eval()
    shallow = shallow_model(four_layer_encoder_dir).model.encoder.eval()
    # One sentence, no padding: every position attends to every other, so the layers need no mask.
    encoded = shallow_model(four_layer_encoder_dir).tokenizer(TEXTS[:1], return_tensors="pt")
    with torch.no_grad():
        hidden = full.embeddings(input_ids=encoded["input_ids"], token_type_ids=encoded["token_type_ids"])
        for source in (1, 3):
            hidden = full.encoder.layer[source](hidden, None)
        got = shallow(**encoded).last_hidden_state
    torch.testing.assert_close(got, hidden)


def test_a_shallower_model_saves_and_loads_with_its_depth(four_layer_encoder_dir, tmp_path):
    loaded = shallow_model(four_layer_encoder_dir)
    with torch.no_grad():
        for parameter in loaded.model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    reloaded = load_joint_model(save_joint_model(loaded, tmp_path / "model"))
    assert reloaded.model.encoder.config.num_hidden_layers == 2 and len(reloaded.model.encoder.encoder.layer) == 2
    for before, after in zip(predict_texts(loaded, TEXTS), predict_texts(reloaded, TEXTS)):
        np.testing.assert_array_equal(before.event_scores, after.event_scores)
        assert before.actors == after.actors


def test_layers_the_encoder_does_not_have_are_refused_by_name(four_layer_encoder_dir):
    with pytest.raises(ModelError) as raised:
        shallow_model(four_layer_encoder_dir, layers=(1, 4))
    assert str(raised.value) == "model.encoder_layers [1, 4]: the encoder has 4 layers, so the indices must lie in 0..3"
    with pytest.raises(ModelError) as raised:
        shallow_model(four_layer_encoder_dir, layers=(3, 1))
    assert str(raised.value) == "model.encoder_layers [3, 1]: expected strictly increasing layer indices"


def test_config_mistakes_in_encoder_layers_name_the_file_and_the_key(tmp_path):
    path = tmp_path / "shallow.yaml"

    def error(layers) -> str:
        mapping = tiny_config_mapping(tmp_path, "unused", tmp_path / "ckpt")
        mapping["model"]["encoder_layers"] = layers
        path.write_text(yaml.safe_dump(mapping))
        with pytest.raises(ConfigError) as raised:
            load_config(path)
        return str(raised.value)

    assert error([2, 2]) == (
        f"{path}: invalid configuration\n  model.encoder_layers: Value error, the layer indices must be strictly "
        "increasing (got [2, 2])"
    )
    assert error([-1, 2]) == f"{path}: invalid configuration\n  model.encoder_layers.0: Input should be greater than or equal to 0 (got -1)"
    assert error([]) == f"{path}: invalid configuration\n  model.encoder_layers: List should have at least 1 item after validation, not 0"


class Interrupted(Exception):
    pass


def stop_after_first_epoch(event):
    if isinstance(event, EpochEvent):
        raise Interrupted


def test_the_trainer_builds_the_shallower_model_and_refuses_to_resume_another_depth(four_layer_encoder_dir, tmp_path, mlflow_tracking):
    write_tiny_corpus(tmp_path / "data")
    sections = {"tracking": {"register_model": False, "log_model": False}, "training": {"max_steps_per_epoch": 1}}
    shallow = tiny_config(tmp_path / "data", four_layer_encoder_dir, tmp_path / "ckpt", model={"encoder_layers": [0, 2]}, **sections)
    with pytest.raises(Interrupted):
        train(shallow, callbacks=[stop_after_first_epoch], show_progress=False)
    assert load_joint_model(tmp_path / "ckpt" / "last").model.encoder.config.num_hidden_layers == 2
    deeper = tiny_config(tmp_path / "data", four_layer_encoder_dir, tmp_path / "ckpt", model={"encoder_layers": [0, 1, 2]}, **sections)
    with pytest.raises(ConfigError, match="model.encoder_layers keeps 3 layers now and that run's encoder has 2"):
        train(deeper, resume=True, show_progress=False)
