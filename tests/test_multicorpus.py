"""Several corpora in one model: each auxiliary corpus trains its own heads on the shared encoder, is scored
on its own dev split, and the saved model is the main corpus's alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from conflict_events.errors import ConfigError
from conflict_events.model import load_joint_model
from conflict_events.training.data import collate, encode_examples
from conflict_events.training.loop import EpochEvent
from conflict_events.training.multicorpus import MultiCorpusObjective, SharedEncoderModel, load_auxiliary
from conflict_events.model import LossSettings, build_joint_model, HeadSettings
from conflict_events.training.objectives import SupervisedJointLoss
from conflict_events.config import config_from_mapping
from conflict_events.training.testing import tiny_config_mapping, write_tiny_corpus
from conflict_events.training.trainer import train

REPORTS = ["Militants shot two policemen.", "A bomb went off at the market.", "Gunmen kidnapped a trader.",
           "Rebels fired at a patrol and planted a mine.", "Villagers reported an attack."]
TYPES = [["armed_assault"], ["bombing"], ["kidnapping"], ["armed_assault", "bombing"], []]


def write_auxiliary(directory: Path) -> tuple[Path, Path]:
    """A multilabel event corpus (SATP-like) and an entity corpus (re3d-like), each with its own config."""
    directory.mkdir(parents=True, exist_ok=True)
    events = [{"id": f"r{i}", "text": f"{REPORTS[i % 5]} Report {i}.", "event": TYPES[i % 5]} for i in range(30)]
    (directory / "reports.jsonl").write_text("".join(json.dumps(r) + "\n" for r in events))
    entities = []
    for i in range(30):
        text = f"Officials in Town{i} met Colonel Ade{i}."
        entities.append({"id": f"e{i}", "text": text, "actors": [
            {"role": "Location", "char_start": 13, "char_end": 13 + len(f"Town{i}")},
            {"role": "Person", "char_start": text.index("Colonel"), "char_end": len(text) - 1},
        ]})
    (directory / "entities.jsonl").write_text("".join(json.dumps(r) + "\n" for r in entities))
    satp = {"data": {"root": str(directory), "train": {"jsonl": "reports.jsonl"}, "dev_split": {"fraction": 0.3, "seed": 1}},
            "labels": {"task": "multilabel", "actor_roles": [],
                       "event_classes": [{"code": i, "name": n} for i, n in enumerate(["armed_assault", "bombing", "kidnapping"])]},
            "training": {"tune_threshold": True}}
    re3d = {"data": {"root": str(directory), "train": {"jsonl": "entities.jsonl"}, "dev_split": {"fraction": 0.3, "seed": 1}},
            "labels": {"event_classes": [{"code": 0, "name": "no_event_layer"}],
                       "actor_roles": [{"tag": "Location", "name": "location"}, {"tag": "Person", "name": "person"}]}}
    (directory / "satp.yaml").write_text(yaml.safe_dump(satp))
    (directory / "re3d.yaml").write_text(yaml.safe_dump(re3d))
    return directory / "satp.yaml", directory / "re3d.yaml"


def config_for(tmp_path: Path, encoder: Path, auxiliary: list[dict]):
    mapping = tiny_config_mapping(tmp_path / "data", encoder, tmp_path / "ckpt")
    mapping["training"]["epochs"] = 2
    mapping["tracking"]["register_model"] = False
    mapping["auxiliary"] = auxiliary
    return config_from_mapping(mapping, source="<test>")


@pytest.fixture()
def config_with_auxiliary(tiny_encoder_dir, tmp_path):
    write_tiny_corpus(tmp_path / "data")
    satp, re3d = write_auxiliary(tmp_path / "aux")
    return config_for(tmp_path, tiny_encoder_dir, [
        {"name": "satp", "config": str(satp)}, {"name": "re3d", "config": str(re3d), "loss_weight": 0.5},
    ])


def test_each_corpus_is_scored_on_its_own_dev_and_the_saved_model_is_the_main_one(config_with_auxiliary, mlflow_tracking):
    import mlflow

    result = train(config_with_auxiliary, show_progress=False)
    auxiliary = result.dev_metrics.get("auxiliary")
    assert auxiliary is None  # the final dev metrics are the saved (main) model's own
    run = mlflow.MlflowClient().get_run(result.run_id)
    metrics = run.data.metrics
    # Multilabel metrics for the SATP-like corpus, span metrics for the re3d-like one, every epoch.
    assert {"dev_satp_event_micro_f1", "dev_satp_event_example_f1", "dev_re3d_actor_f1", "best_dev_re3d_actor_f1"} <= set(metrics)
    assert "dev_re3d_event_macro_f1" not in metrics  # re3d has no event labels: nothing to measure, not 0
    history = mlflow.MlflowClient().get_metric_history(result.run_id, "dev_satp_event_micro_f1")
    assert [m.step for m in history] == [1, 2]
    saved = load_joint_model(result.best_model_dir)
    assert saved.label_schema == config_with_auxiliary.label_schema
    assert run.data.tags["training.plugins"] == "auxiliary_corpora"


def test_a_batch_of_an_auxiliary_corpus_trains_its_heads_and_the_encoder_but_not_the_main_heads(config_with_auxiliary):
    main = build_joint_model(config_with_auxiliary.model.encoder, config_with_auxiliary.label_schema, HeadSettings(max_length=32))
    corpora = load_auxiliary(config_with_auxiliary, main)
    assert [c.name for c in corpora] == ["satp", "re3d"]
    assert all(c.loaded.joint_model.encoder is main.joint_model.encoder for c in corpora)
    model = SharedEncoderModel(main.joint_model, {c.name: c.loaded.joint_model for c in corpora})
    # One parameter list: the shared encoder appears once, under `encoder.`.
    names = [name for name, _ in model.named_parameters()]
    assert len(names) == len(set(names)) and all(not n.startswith(("main.encoder", "auxiliary.satp.encoder")) for n in names)
    objective = MultiCorpusObjective(SupervisedJointLoss(LossSettings()), [("satp", 1.0), ("re3d", 0.5)], LossSettings())
    satp = corpora[0]
    features = encode_examples(satp.train[:4], main.tokenizer, satp.loaded.label_schema, 32, task=1)
    batch = collate(features, main.tokenizer.pad_token_id, True) | {"task": torch.tensor(1)}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    objective(model, batch).total.backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert any(name.startswith("auxiliary.satp.event_head") for name in changed)
    assert any(name.startswith("encoder.") for name in changed)
    assert not any(name.startswith(("main.event_head", "main.role_head", "auxiliary.re3d")) for name in changed)


def test_an_interrupted_run_with_auxiliary_corpora_resumes_their_heads(config_with_auxiliary, mlflow_tracking):
    class Interrupted(Exception):
        pass

    def stop_after_first_epoch(event):
        if isinstance(event, EpochEvent) and event.epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(config_with_auxiliary, show_progress=False, callbacks=[stop_after_first_epoch])
    state = torch.load(Path(config_with_auxiliary.training.output_dir) / "last" / "training_state.pt", weights_only=True)
    heads = state["plugins"]["auxiliary_corpora"]
    assert set(heads) == {"satp", "re3d"} and "event_head.weight" in heads["satp"]
    assert not any(key.startswith("encoder.") for key in heads["re3d"])
    result = train(config_with_auxiliary, resume=True, show_progress=False)
    assert result.epochs_done == 2
    # Resuming without the auxiliary corpora is refused, naming the setting.
    plain = config_with_auxiliary.model_copy(update={"auxiliary": []})
    with pytest.raises(ConfigError, match="auxiliary is off now"):
        train(plain, resume=True, show_progress=False)


def test_an_auxiliary_config_that_does_not_exist_is_named(tiny_encoder_dir, tmp_path):
    write_tiny_corpus(tmp_path / "data")
    config = config_for(tmp_path, tiny_encoder_dir, [{"name": "gone", "config": str(tmp_path / "missing.yaml")}])
    main = build_joint_model(config.model.encoder, config.label_schema, HeadSettings(max_length=32))
    with pytest.raises(ConfigError, match="auxiliary corpus 'gone'"):
        load_auxiliary(config, main)


def test_auxiliary_corpus_names_are_unique(tiny_encoder_dir, tmp_path):
    with pytest.raises(ConfigError, match="names must be unique"):
        config_for(tmp_path, tiny_encoder_dir, [{"name": "a", "config": "x.yaml"}, {"name": "a", "config": "y.yaml"}])
