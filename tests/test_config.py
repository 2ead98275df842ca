"""Every config in configs/ loads and describes a usable corpus; bad keys and types are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conflict_events.config import Config, load_config
from conflict_events.corpora.corpus import SPLIT_NAMES
from conflict_events.errors import ConfigError

REPO = Path(__file__).parents[1]
CONFIG_FILES = sorted((REPO / "configs").glob("*.yaml"))


def test_configs_directory_is_not_empty():
    assert {path.name for path in CONFIG_FILES} >= {"cameo.yaml", "quickstart.yaml", "satp.yaml", "re3d.yaml"}


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda path: path.name)
def test_every_config_loads_and_describes_its_data(path: Path):
    config = load_config(path)
    assert isinstance(config, Config)
    schema = config.label_schema
    assert schema.event_names and len(set(schema.event_names)) == len(schema.event_names)
    assert schema.bio_tags[0] == "O" and len(schema.bio_tags) == 1 + 2 * len(schema.actor_roles)
    assert config.data.train.paths()
    for name in SPLIT_NAMES:
        files = config.data.split(name)
        for relative in files.paths() if files else []:
            assert not Path(relative).is_absolute(), f"{path.name}: data paths are relative to data.root"
            if files.actors is not None:
                assert schema.actor_roles, f"{path.name}: an actor file needs labels.actor_roles"
    for entry in config.distill.unlabeled:
        assert not Path(entry.path).is_absolute(), f"{path.name}: distill.unlabeled paths are relative to data.root"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda path: path.name)
def test_every_config_round_trips_through_its_flat_form(path: Path):
    config = load_config(path)
    assert config.flat()["data.root"] == config.data.root


def write_config(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load((REPO / "configs" / "cameo.yaml").read_text(encoding="utf-8"))
    edit(raw)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_unknown_key_in_the_file_is_named(tmp_path):
    path = write_config(tmp_path, lambda raw: raw["data"].update(trian={"events": "x.tsv"}))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == f"{path}: invalid configuration\n  unknown key 'data.trian'"


def test_wrong_type_in_the_file_is_named(tmp_path):
    path = write_config(tmp_path, lambda raw: raw["model"].update(max_length="long"))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == (
        f"{path}: invalid configuration\n"
        "  model.max_length: Input should be a valid integer, unable to parse string as an integer (got 'long')"
    )


def test_unknown_override_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError) as raised:
        load_config(REPO / "configs" / "cameo.yaml", overrides=["data.dev_split.fractio=0.1"])
    assert str(raised.value) == (
        "--set data.dev_split.fractio=0.1: unknown key 'data.dev_split.fractio' (did you mean 'data.dev_split.fraction'?)"
    )


def test_wrong_override_type_is_named():
    with pytest.raises(ConfigError, match=r"data.max_train_examples: Input should be greater than 0 \(got 0\)"):
        load_config(REPO / "configs" / "cameo.yaml", overrides=["data.max_train_examples=0"])


def test_set_and_data_root_overrides_apply():
    config = load_config(
        REPO / "configs" / "cameo.yaml",
        overrides=["data.repair_bio=false", "data.dev_split.seed=7", "data.max_train_examples=20"],
        data_root="/elsewhere",
    )
    assert config.data.repair_bio is False
    assert config.data.dev_split.seed == 7
    assert config.data.max_train_examples == 20
    assert config.data.root == "/elsewhere"
    assert config.data.resolve(config.data.train.events) == Path("/elsewhere/cameo_class/train.tsv")


def test_split_needs_a_source(tmp_path):
    path = write_config(tmp_path, lambda raw: raw["data"].update(train={}))
    with pytest.raises(ConfigError, match=r"data.train: Value error, a split needs at least one of"):
        load_config(path)


def test_extends_lays_the_file_over_its_base(tmp_path):
    base = yaml.safe_load((REPO / "configs" / "cameo.yaml").read_text(encoding="utf-8"))
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base), encoding="utf-8")
    (tmp_path / "recipe.yaml").write_text(
        "extends: base.yaml\ntraining:\n  epochs: 20\n  actor_swap_probability: 0.3\n", encoding="utf-8"
    )
    config = load_config(tmp_path / "recipe.yaml", ["training.seed=7"])
    assert config.training.epochs == 20 and config.training.actor_swap_probability == 0.3
    assert config.training.seed == 7  # --set still applies last
    # Keys the recipe does not mention keep the base's values, section by section.
    assert config.training.learning_rate == base["training"]["learning_rate"]
    assert config.label_schema == load_config(REPO / "configs" / "cameo.yaml").label_schema


def test_extends_names_a_missing_base_and_the_file_that_wants_it(tmp_path):
    (tmp_path / "recipe.yaml").write_text("extends: nowhere.yaml\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config file not found: .*nowhere.yaml \(extended by .*recipe.yaml\)"):
        load_config(tmp_path / "recipe.yaml")


def test_extends_in_a_circle_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="'extends' goes round in a circle"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize("value", ["1e999", "-1e999", "inf", "nan"])
def test_a_non_finite_number_is_an_error_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"training\.learning_rate: Input should be a finite number"):
        load_config(REPO / "configs" / "quickstart.yaml", overrides=[f"training.learning_rate={value}"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.warmup_ratio=1.5", r"training\.warmup_ratio: Input should be less than 1"),
        ("training.weight_averaging=nan", r"training\.weight_averaging: Input should be a finite number"),
        ("inference.batch_size=0", r"inference\.batch_size: Input should be greater than or equal to 1"),
    ],
)
def test_an_out_of_range_number_is_an_error_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(REPO / "configs" / "quickstart.yaml", overrides=[override])


def test_data_policy_defaults_to_error_for_both_defects():
    policy = load_config(REPO / "configs" / "cameo.yaml").data.policy
    assert (policy.leakage, policy.conflicting_duplicates) == ("error", "error")


def test_an_unknown_data_policy_value_is_named_with_the_choices(tmp_path):
    path = write_config(tmp_path, lambda raw: raw["data"].update(policy={"leakage": "drop_from_train"}))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == (
        f"{path}: invalid configuration\n"
        "  data.policy.leakage: Input should be 'error' or 'drop_from_earlier_split' (got 'drop_from_train')"
    )
    with pytest.raises(
        ConfigError, match=r"data\.policy\.conflicting_duplicates: Input should be 'error', 'drop' or 'keep_first'"
    ):
        load_config(REPO / "configs" / "cameo.yaml", overrides=["data.policy.conflicting_duplicates=first"])


def test_an_unknown_data_policy_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError) as raised:
        load_config(REPO / "configs" / "cameo.yaml", overrides=["data.policy.leak=error"])
    assert (
        str(raised.value) == "--set data.policy.leak=error: unknown key 'data.policy.leak' (did you mean 'data.policy.leakage'?)"
    )
