"""Entity substitution (conflict_events/corpora/shift.py): the shifted dev set the trainer scores next to dev,
and the augmentation plugin (training/plugins.py: EntitySubstitution). Substitution is tested on the team's
gazetteer and leaders table; the trainer on the tiny corpus and encoder (a few steps per run)."""

from __future__ import annotations

import json
import random
import re

import mlflow
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conflict_events.cli import app
from conflict_events.config import ShiftedDevConfig, load_config
from conflict_events.corpora.jsonl import example_from_record
from conflict_events.corpora.shift import (
    EntitySubstituter,
    Substitution,
    apply_substitutions,
    crosses,
    default_substituter,
    example_rng,
    load_leaders,
    shift_examples,
    shift_split,
)
from conflict_events.errors import ConfigError
from conflict_events.resolution.gazetteer import cached_gazetteer
from conflict_events.schema import ActorSpan, EventExample, Filler, Token
from conflict_events.training.data import EntityAugmenter, encode_examples
from conflict_events.training.evaluate import evaluate
from conflict_events.training.events import EpochEvent
from conflict_events.training.testing import tiny_config, tiny_config_mapping, tiny_examples, write_tiny_corpus
from conflict_events.training.trainer import train


@pytest.fixture(scope="module")
def substituter() -> EntitySubstituter:
    return default_substituter()


def example(text: str, spans: list[tuple[str, str]] | None = None, event: str | None = "neutral", id: str = "x") -> EventExample:
    """``spans``: (role, surface) pairs, each the first occurrence of the surface in ``text``."""
    actors = None
    if spans is not None:
        actors = []
        for role, surface in spans:
            start = text.index(surface)
            actors.append(ActorSpan(role, start, start + len(surface)))
    return EventExample(id=id, text=text, event=event, actors=actors)


def target_of(substituter: EntitySubstituter, country_name: str) -> str:
    (code,) = [c for c, name in substituter.replacements.country_name.items() if name == country_name]
    return code


# --- finding and replacing --------------------------------------------------------------------------
def test_countries_demonyms_capitals_leaders_and_organisations_are_found(substituter):
    text = "Former Germany Chancellor Angela Merkel met NATO officials and German troops in Berlin, Merkel said."
    found = {(text[m.char_start : m.char_end], m.kind) for m in substituter.mentions(text)}
    assert found == {
        ("Germany", "country"), ("Angela Merkel", "leader"), ("NATO", "organisation"), ("German", "demonym"),
        ("Berlin", "capital"), ("Merkel", "leader"),
    }


def test_one_country_maps_to_one_other_and_its_demonym_capital_and_leader_follow(substituter):
    original = example(
        "Germany said German troops left Berlin and Germany would not send them back.",
        [("S", "Germany"), ("T", "German troops")],
    )
    result = substituter(original, random.Random(3))
    text = result.example.text
    by_kind = {s.kind: s.replacement for s in result.applied}
    assert set(by_kind) == {"country", "demonym", "capital"}
    code = target_of(substituter, by_kind["country"])
    assert code != "DEU"
    assert by_kind["demonym"] == substituter.replacements.demonym[code]
    assert by_kind["capital"] == substituter.replacements.capital[code]
    # both mentions of Germany got the same replacement
    assert [s.replacement for s in result.applied if s.kind == "country"] == [by_kind["country"]] * 2
    assert text == (
        f"{by_kind['country']} said {by_kind['demonym']} troops left {by_kind['capital']} and {by_kind['country']} "
        "would not send them back."
    )
    source, target = result.example.actors
    assert text[source.char_start : source.char_end] == by_kind["country"]
    assert text[target.char_start : target.char_end] == f"{by_kind['demonym']} troops"
    assert result.example.event == original.event


def test_two_countries_never_map_to_one_nor_to_each_other(substituter):
    text = "Kenya accused Somalia of shelling the border, Somali officials said in Nairobi."
    for seed in range(20):
        result = substituter(example(text), random.Random(seed))
        countries = [s.replacement for s in result.applied if s.kind == "country"]
        assert len(set(countries)) == 2
        assert not {"Kenya", "Somalia"} & set(countries)


def test_a_leader_and_the_short_form_of_the_name_map_to_one_leader(substituter):
    result = substituter(example("Russian Foreign Minister Sergei Lavrov met reporters; Lavrov said nothing."), random.Random(5))
    (full,) = [s for s in result.applied if s.original == "Sergei Lavrov"]
    (short,) = [s for s in result.applied if s.original == "Lavrov"]
    (leader,) = [leader for leader in substituter.leaders if leader.name == full.replacement]
    assert short.replacement == (leader.short or leader.name)
    assert full.replacement != "Sergei Lavrov"


def test_an_organisation_becomes_another_of_its_sector(substituter):
    result = substituter(example("Boko Haram fighters attacked the UN camp."), random.Random(1))
    organisations = substituter.gazetteer.tables.organisations
    replaced = {s.original: s.replacement for s in result.applied}
    assert organisations[replaced["Boko Haram"]].sector == "REB" and replaced["Boko Haram"] != "Boko Haram"
    assert organisations[replaced["UN"]].sector == "IGO" and replaced["UN"] != "UN"


def test_a_plural_demonym_stays_plural_and_a_dateline_stays_in_capitals(substituter):
    result = substituter(example("TBILISI, May 14 - Afghans protested."), random.Random(2))
    replaced = {s.original: s.replacement for s in result.applied}
    assert replaced["TBILISI"].isupper()
    demonym = replaced["Afghans"]
    (code,) = {c for c, form in substituter.replacements.demonym.items() if demonym in (form, form + "s")}
    singular = substituter.replacements.demonym[code]
    assert demonym == (singular if singular.endswith(("s", "sh", "ch", "se", "z", "x")) or " " in singular else singular + "s")


def test_a_country_said_with_the_loses_it_unless_it_qualifies_a_noun(substituter):
    original = example("The United Kingdom and France opposed it, along with the U.S. military.", [("S", "The United Kingdom")])
    result = substituter(original, random.Random(1))
    replaced = {s.original: s.replacement for s in result.applied}
    uk, france, us = replaced["The United Kingdom"], replaced["France"], replaced["U.S."]
    assert result.example.text == f"{uk} and {france} opposed it, along with the {us} military."
    source = result.example.actors[0]
    assert result.example.text[source.char_start : source.char_end] == uk
    # a span that starts at the name keeps the article outside it
    kept = substituter(example("Iran accused the United Kingdom.", [("T", "United Kingdom")]), random.Random(1))
    (target,) = [s.replacement for s in kept.applied if s.original == "United Kingdom"]
    assert kept.example.text.endswith(f" accused the {target}.")
    dropped = substituter(example("Iran accused the United Kingdom.", [("T", "the United Kingdom")]), random.Random(1))
    assert dropped.example.text.endswith(f" accused {target}.")


def test_a_substitution_across_a_span_boundary_is_left_out_and_counted(substituter):
    original = example("The United States army attacked Iraqi positions.", [("S", "States army"), ("T", "Iraqi positions")])
    result = substituter(original, random.Random(0))
    assert [s.original for s in result.applied] == ["Iraqi"]
    assert result.skipped == 1
    assert result.example.text.startswith("The United States army attacked ")
    source = result.example.actors[0]
    assert result.example.text[source.char_start : source.char_end] == "States army"
    assert crosses(Substitution(4, 17, "Kenya", "country"), original.actors[0])


def test_an_example_without_actor_labels_is_substituted_too(substituter):
    result = substituter(example("Germany condemned the attack.", spans=None, event=None), random.Random(0))
    assert result.example.actors is None and result.example.event is None
    assert result.applied and not result.example.text.startswith("Germany")


def test_substitution_is_deterministic_given_the_stream(substituter):
    original = example("Iraqi troops attacked Islamic State positions near Mosul, Turkey said.")
    first = substituter(original, example_rng(7, "x"))
    assert substituter(original, example_rng(7, "x")) == first
    others = {substituter(original, example_rng(seed, "x")).example.text for seed in range(8)}
    assert len(others) > 1


def test_word_tokens_move_and_a_substituted_name_gets_the_replacements_words(substituter):
    text = "New Delhi talks with Pakistan 's army ."
    words, tokens, cursor = text.split(" "), [], 0
    for word in words:
        tokens.append(Token(word, cursor, cursor + len(word)))
        cursor += len(word) + 1
    original = EventExample("t", text, tokens=tokens, event="neutral", actors=[ActorSpan("T", 21, 38)])
    result = substituter(original, random.Random(4))
    new = result.example
    assert {s.original for s in result.applied} == {"New Delhi", "Pakistan"}
    assert [t.text for t in new.tokens] == new.text.split(" ")
    assert all(new.text[t.char_start : t.char_end] == t.text for t in new.tokens)


def test_fillers_of_document_level_corpora_get_the_same_replacements(substituter):
    text = "Guerrillas of the FMLN attacked a bank in Colombia. Colombia blamed the FMLN."
    original = EventExample(
        "d", text, actors=[ActorSpan("S", 0, 22)], fillers=(Filler("S", ("Guerrillas of the FMLN",)), Filler("T", ("Colombia",))),
    )
    result = substituter(original, random.Random(0))
    (country,) = {s.replacement for s in result.applied if s.original == "Colombia"}
    assert result.example.fillers[1].mentions == (country,)
    for filler in result.example.fillers:
        assert all(mention in result.example.text for mention in filler.mentions)


def test_kinds_limit_what_is_substituted():
    only_countries = EntitySubstituter(cached_gazetteer(), load_leaders(), kinds=("country",))
    result = only_countries(example("Germany sent German troops to Berlin."), random.Random(0))
    assert [s.kind for s in result.applied] == ["country"]
    with pytest.raises(ConfigError, match="unknown entity kind"):
        EntitySubstituter(cached_gazetteer(), kinds=("planet",))


def test_a_leaders_table_with_an_unknown_country_code_names_the_file_and_key(tmp_path):
    path = tmp_path / "leaders.yaml"
    path.write_text(yaml.safe_dump({"leaders": {"XXX": ["Jane Doe"]}}))
    with pytest.raises(ConfigError, match=r"leaders.yaml: leaders.XXX: 'XXX' is not an ISO 3166-1 alpha-3 code"):
        load_leaders(path)
    path.write_text(yaml.safe_dump({"leaders": {"KEN": [{"name": "Jane Doe", "title": "x"}]}}))
    with pytest.raises(ConfigError, match="invalid leaders table"):
        load_leaders(path)


def test_the_shifted_set_keeps_ids_labels_and_order_and_says_what_changed(substituter):
    examples = [
        example("Kenya attacked Somalia.", [("S", "Kenya"), ("T", "Somalia")], "material_conflict", id="a"),
        example("The army said the situation was calm.", [("S", "The army")], id="b"),
        example("Germany condemned Russia.", None, "verbal_conflict", id="c"),
    ]
    shifted = shift_examples(examples, seed=13, substituter=substituter)
    assert [e.id for e in shifted.examples] == ["a", "b", "c"]
    assert [e.event for e in shifted.examples] == [e.event for e in examples]
    assert shifted.examples[1] == examples[1]
    assert shifted.changed == 2 and shifted.substitutions == 4 and shifted.by_kind == {"country": 4}
    assert [sample["id"] for sample in shifted.samples] == ["a", "c"]
    # One example's copy does not depend on which other examples the split holds (a fold, a file).
    assert shift_examples(examples[2:], seed=13, substituter=substituter).examples[0] == shifted.examples[2]
    assert shift_split(examples, ShiftedDevConfig(seed=13)).examples == shifted.examples


# --- properties ---------------------------------------------------------------------------------------
NAMES = [
    "Germany", "German", "Germans", "Berlin", "NATO", "Angela Merkel", "Merkel", "United States", "U.S.", "Kenya",
    "Kenyan", "Nairobi", "Afghans", "Boko Haram", "Islamic State", "Mosul", "Syria", "Syrian", "TBILISI", "Sergei Lavrov",
]
WORDS = ["the", "army", "said", "troops", "attacked", "police", "in", "of", "talks", "with", "officials", "Monday", ","]


@st.composite
def labelled_examples(draw):
    pieces = draw(st.lists(st.sampled_from(NAMES + WORDS), min_size=1, max_size=14))
    text, starts, cursor = "", [], 0
    for piece in pieces:
        starts.append(cursor)
        text += piece + " "
        cursor = len(text)
    text = text.rstrip()
    ends = [start + len(piece) for start, piece in zip(starts, pieces)]
    actors = None
    if draw(st.booleans()):
        actors, position = [], 0
        while position < len(pieces):
            first = draw(st.integers(position, len(pieces)))
            if first >= len(pieces):
                break
            last = draw(st.integers(first, min(first + 3, len(pieces) - 1)))
            actors.append(ActorSpan(draw(st.sampled_from("ST")), starts[first], ends[last]))
            position = last + 1
    return EventExample("p", text, event=draw(st.sampled_from([None, "neutral"])), actors=actors)


def rebuilt(text: str, applied, start: int, end: int) -> str:
    """``text[start:end]`` with the substitutions inside it applied."""
    out, cursor = "", start
    for substitution in applied:
        if start <= substitution.char_start and substitution.char_end <= end:
            out += text[cursor : substitution.char_start] + substitution.replacement
            cursor = substitution.char_end
    return out + text[cursor:end]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(original=labelled_examples(), seed=st.integers(0, 2**16))
def test_substitution_keeps_the_text_around_names_and_spans_cover_the_same_words(substituter, original, seed):
    result = substituter(original, random.Random(seed))
    new = result.example
    # the text outside the substitutions is unchanged, and every substitution replaced what it names
    assert new.text == rebuilt(original.text, result.applied, 0, len(original.text))
    assert all(original.text[s.char_start : s.char_end] == s.original for s in result.applied)
    assert new.event == original.event and new.id == original.id
    if original.actors is None:
        assert new.actors is None
        return
    assert len(new.actors) == len(original.actors)
    previous_end = 0
    for before, after in zip(original.actors, new.actors):
        assert after.role == before.role
        assert previous_end <= after.char_start < after.char_end <= len(new.text)
        previous_end = after.char_end
        assert not any(crosses(s, before) for s in result.applied)
        assert new.text[after.char_start : after.char_end] == rebuilt(original.text, result.applied, before.char_start, before.char_end)


@settings(max_examples=40, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from(list("ab ,.-")), max_size=30),
    edits=st.lists(st.tuples(st.integers(0, 30), st.integers(1, 5), st.text(alphabet="XYZ ", min_size=1, max_size=6)), max_size=4),
)
def test_apply_substitutions_moves_every_span_by_what_changed_before_it(text, edits):
    """apply_substitutions alone, on arbitrary non-overlapping edits and word-free text."""
    substitutions, cursor = [], 0
    for start, length, replacement in sorted(edits):
        start = max(start, cursor)
        if start + length > len(text):
            break
        substitutions.append(Substitution(start, start + length, replacement, "country", text[start : start + length]))
        cursor = start + length
    spans = [ActorSpan("S", 0, len(text))] if text else []
    new, applied = apply_substitutions(EventExample("e", text, actors=spans), substitutions)
    assert list(applied) == substitutions
    assert new.text == rebuilt(text, applied, 0, len(text))
    if spans:
        assert (new.actors[0].char_start, new.actors[0].char_end) == (0, len(new.text))


# --- the trainer ---------------------------------------------------------------------------------------
@pytest.fixture()
def corpus_dir(tmp_path):
    write_tiny_corpus(tmp_path / "data")
    return tmp_path / "data"


def epochs_of(events: list) -> list[EpochEvent]:
    return [event for event in events if isinstance(event, EpochEvent)]


def test_a_run_reports_dev_and_shifted_dev_side_by_side(tiny_encoder_dir, corpus_dir, tmp_path, mlflow_tracking):
    config = tiny_config(
        corpus_dir, tiny_encoder_dir, tmp_path / "ckpt",
        training={"epochs": 2, "max_steps_per_epoch": 2, "entity_substitution_probability": 0.5, "actor_swap_probability": 0.3},
        tracking={"register_model": False},
        inference={"backend": "torch"},
    )
    events: list = []
    result = train(config, show_progress=False, callbacks=[events.append])
    for event in epochs_of(events):
        assert {"event_macro_f1", "actor_f1", "selection_score"} <= set(event.dev_metrics["shifted"])
        assert event.score == event.dev_metrics["selection_score"]  # selected on dev by default
    assert result.shifted_dev_metrics is not None and result.selection_metrics is result.dev_metrics

    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    steps = {m.step for m in client.get_metric_history(result.run_id, "dev_shifted_event_macro_f1")}
    assert steps == {m.step for m in client.get_metric_history(result.run_id, "dev_event_macro_f1")} == {1, 2}
    assert run.data.metrics["best_dev_shifted_mean_f1"] == pytest.approx(
        (result.shifted_dev_metrics["event_macro_f1"] + result.shifted_dev_metrics["actor_f1"]) / 2
    )
    assert {"best_dev_mean_f1", "best_dev_shifted_event_macro_f1", "best_dev_shifted_actor_f1"} <= set(run.data.metrics)
    assert int(run.data.params["data.shifted_dev.examples_changed"]) > 0
    assert run.data.params["data.shifted_dev.seed"] == "13"
    assert run.data.tags["training.plugins"] == "entity_substitution,actor_swap"
    assert run.data.tags["training.plugin.entity_substitution.probability"] == "0.5"
    shifted = json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/data/shifted_dev.json"))
    assert shifted["examples_changed"] == int(run.data.params["data.shifted_dev.examples_changed"])
    assert shifted["samples"] and shifted["samples"][0]["before"] != shifted["samples"][0]["after"]
    reports = {a.path for a in client.list_artifacts(result.run_id, "reports")}
    assert "reports/dev_shifted_classification_report.txt" in reports

    # `evaluate --split dev_shifted` scores the saved model on the same copy, with its own thresholds.
    metrics = evaluate(result.best_model_dir, config, "dev_shifted")
    assert metrics["split"] == "dev_shifted"
    assert metrics["event_macro_f1"] == result.shifted_dev_metrics["event_macro_f1"]
    assert metrics["actor_f1"] == result.shifted_dev_metrics["actor_f1"]
    assert metrics["digest"] != evaluate(result.best_model_dir, config, "dev")["digest"]


def test_the_best_epoch_can_be_selected_on_the_shifted_dev_set(tiny_encoder_dir, corpus_dir, tmp_path, mlflow_tracking):
    config = tiny_config(
        corpus_dir, tiny_encoder_dir, tmp_path / "ckpt",
        training={"epochs": 3, "max_steps_per_epoch": 2, "selection_split": "dev_shifted", "learning_rate": 5e-3},
        tracking={"register_model": False, "log_model": False},
    )
    events: list = []
    result = train(config, show_progress=False, callbacks=[events.append])
    epochs = epochs_of(events)
    shifted_scores = [event.dev_metrics["shifted"]["selection_score"] for event in epochs]
    assert [event.score for event in epochs] == shifted_scores
    assert any(event.dev_metrics["selection_score"] != event.score for event in epochs)  # dev would pick otherwise
    assert result.best_epoch == 1 + shifted_scores.index(max(shifted_scores))
    assert result.selection_metrics is result.shifted_dev_metrics


def test_selecting_on_the_shifted_dev_set_needs_it(tiny_encoder_dir, corpus_dir, tmp_path):
    with pytest.raises(ConfigError, match="training.selection_split is 'dev_shifted' but data.shifted_dev.enabled is false"):
        tiny_config(
            corpus_dir, tiny_encoder_dir, tmp_path, data={"shifted_dev": {"enabled": False}},
            training={"selection_split": "dev_shifted"},
        )
    with pytest.raises(ConfigError, match="data.shifted_dev.kinds"):
        tiny_config(corpus_dir, tiny_encoder_dir, tmp_path, data={"shifted_dev": {"kinds": ["planet"]}})


def test_evaluate_cli_scores_a_model_on_the_shifted_dev_set(tiny_encoder_dir, tmp_path, mlflow_tracking):
    write_tiny_corpus(tmp_path / "data")
    mapping = tiny_config_mapping(tmp_path / "data", tiny_encoder_dir, tmp_path / "ckpt")
    mapping["training"].update(epochs=1, max_steps_per_epoch=1)
    mapping["tracking"].update(register_model=False, log_model=False)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(mapping))
    train(load_config(path), show_progress=False)
    outcome = CliRunner().invoke(
        app, ["evaluate", "--model", str(tmp_path / "ckpt" / "best"), "--config", str(path), "--split", "dev_shifted"]
    )
    assert outcome.exit_code == 0, outcome.output
    assert re.match(r"dev_shifted \(\d+ sentences, sha256:\w+\): event accuracy", outcome.output), outcome.output


# --- the augmentation plugin -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer(tiny_encoder_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_encoder_dir))


def tiny_training_set(schema):
    return [example_from_record(record, schema, None) for record in tiny_examples(21)]


def augmenter_for(examples, tokenizer, schema, probability=1.0, seed=7):
    features = encode_examples(examples, tokenizer, schema, 32)
    return features, EntityAugmenter(examples, features, default_substituter(), tokenizer, schema, probability, 32, 0, seed)


def test_the_plugin_substitutes_class_only_examples_and_relabels_the_moved_spans(tiny_encoder_dir, tokenizer, tmp_path):
    schema = tiny_config(tmp_path, tiny_encoder_dir, tmp_path).label_schema
    examples = tiny_training_set(schema)
    features, augmenter = augmenter_for(examples, tokenizer, schema)
    augmented = augmenter(features, epoch=1)
    changed = [index for index, (before, after) in enumerate(zip(features, augmented)) if before.input_ids != after.input_ids]
    assert changed
    assert any(examples[index].actors is None for index in changed), "a class-only example was not substituted"
    bio = schema.bio_tags
    for index in changed:
        expected = augmenter.substituted(index, 1)
        assert tokenizer.decode(augmented[index].input_ids, skip_special_tokens=True) == tokenizer.decode(
            tokenizer(expected.text)["input_ids"], skip_special_tokens=True
        )
        assert augmented[index].event_target == features[index].event_target
        begins = sum(1 for label in augmented[index].role_labels if label >= 0 and bio[label].startswith("B-"))
        assert begins == (len(expected.actors) if expected.actors is not None else 0)
    untouched = [index for index in range(len(features)) if index not in changed]
    assert all(augmented[index] == features[index] for index in untouched)


def test_the_plugin_is_deterministic_per_epoch_whatever_the_batch_order(tiny_encoder_dir, tokenizer, tmp_path):
    schema = tiny_config(tmp_path, tiny_encoder_dir, tmp_path).label_schema
    examples = tiny_training_set(schema)
    features, augmenter = augmenter_for(examples, tokenizer, schema, probability=0.5)
    first = augmenter(features, epoch=2)
    order = list(range(len(features)))
    random.Random(0).shuffle(order)
    shuffled = augmenter([features[i] for i in order], epoch=2)
    assert [shuffled[order.index(i)] for i in range(len(features))] == first  # a resumed epoch replays it
    _, again = augmenter_for(examples, tokenizer, schema, probability=0.5)
    assert again(features, epoch=2) == first
    assert augmenter(features, epoch=3) != first
    _, other_seed = augmenter_for(examples, tokenizer, schema, probability=0.5, seed=8)
    assert other_seed(features, epoch=2) != first
    assert augmenter_for(examples, tokenizer, schema, probability=0.0)[1](features, epoch=2) == list(features)
