"""Actor resolution and event location (issue 17): each rule on hand-made cases, the offsets invariant of
place mentions, the tables users lay over the team's, the gold set and its evaluation, and the predictor's
records with resolution on and off."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conflict_events.config import InferenceConfig, ResolutionConfig
from conflict_events.errors import ConfigError
from conflict_events.resolution import SECTORS, resolver_for
from conflict_events.resolution.evaluation import (
    DEFAULT_GOLD,
    GoldActor,
    GoldDocument,
    GoldPlace,
    ResolvedDocument,
    read_gold,
    resolve_gold_spans,
    score,
)
from conflict_events.resolution.tables import default_table_files, load_tables, read_table_file
from conflict_events.sentences import SentenceSplitter
from conftest import REPO_ROOT, SAMPLE_DATA, SHARED_DATA

DERNA = SHARED_DATA / "examples" / "derna_airstrikes.txt"


@pytest.fixture(scope="module")
def resolver():
    return resolver_for(ResolutionConfig())


def places(resolver, text: str) -> list[tuple[str, str, str]]:
    spans = [(s.char_start, s.char_end) for s in SentenceSplitter().split(text)]
    analysis = resolver.analyse(text, spans)
    found = []
    for start, end in spans:
        found += [(p.text, p.kind, p.country) for p in resolver.sentence_locations(analysis, start, end)[0]]
    return found


def event_countries(resolver, text: str) -> list[str | None]:
    spans = [(s.char_start, s.char_end) for s in SentenceSplitter().split(text)]
    analysis = resolver.analyse(text, spans)
    return [resolver.sentence_locations(analysis, start, end)[1] for start, end in spans]


def resolve(resolver, span, sentence=None, document_country=None):
    r = resolver.resolve_actor(span, sentence, document_country)
    return r.country, r.sector, r.org, r.resolved_by


# --- actors: the span first --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "span, sentence, expected",
    [
        ("Serbian army", None, ("SRB", "MIL", None, "span")),  # demonym + strong head noun
        ("Kiev", "Kiev accused Moscow of shelling the city.", ("UKR", "GOV", None, "span")),  # a capital as government
        ("Russia", None, ("RUS", "GOV", None, "span")),  # a state named as actor
        ("the Russians", None, ("RUS", "GOV", None, "span")),
        ("Benghazi", None, ("LBY", "UNK", None, "span")),  # a city that is no capital names no sector
        ("the UN", None, (None, "IGO", "UN", "span")),  # international: null country, decided by the span
        ("NATO peacekeepers", None, (None, "IGO", "NATO", "span")),
        ("Amnesty International", None, (None, "NGO", "Amnesty International", "span")),
        ("the Libyan Red Crescent", None, ("LBY", "NGO", "Red Crescent", "span")),  # the table is silent on its country
        ("Taliban fighters", None, ("AFG", "REB", None, "span")),  # armed groups: sector and country, no org
        ("forces loyal to Libya's eastern government", None, ("LBY", "MIL", None, "span")),  # the head decides
        ("Opposition leader Amara Diallo", None, (None, "OPP", None, None)),  # a strong modifier beats a weak head
        ("Interior Ministry officials", None, (None, "GOV", None, None)),
        ("Houthi-run media", None, ("YEM", "MED", None, "span")),  # an organisation in a compound modifier
        ("the International Criminal Court", None, (None, "JUD", None, "span")),  # sector from the table, no org
    ],
)
def test_the_span_decides_when_it_names_a_country_or_an_organisation(resolver, span, sentence, expected):
    assert resolve(resolver, span, sentence) == expected


def test_then_the_sentence_outside_every_actor_span(resolver):
    assert resolve(resolver, "militants", "Jets struck militants in Benghazi overnight.") == ("LBY", "REB", None, "sentence")
    # The most often named country of the sentence wins, the first on a tie.
    sentence = "Police arrested protesters in Lagos, Nigeria, after talks with Ghana."
    assert resolve(resolver, "protesters", sentence) == ("NGA", "OPP", None, "sentence")


def test_then_the_documents_dominant_country(resolver):
    assert resolve(resolver, "He", "He made no comment.", document_country="LBY") == ("LBY", "UNK", None, "document")
    assert resolve(resolver, "He", "He made no comment.") == (None, "UNK", None, None)


def test_a_country_inside_another_actor_span_is_not_the_sentences(resolver):
    text = "Ukraine reported new attacks. Russian troops shelled residents overnight."
    sentences = [(s.char_start, s.char_end) for s in SentenceSplitter().split(text)]
    troops = (text.index("Russian troops"), text.index("Russian troops") + len("Russian troops"))
    residents = (text.index("residents"), text.index("residents") + len("residents"))
    (_, second) = resolver.resolve_document(text, sentences, [[], [troops, residents]])
    assert (second.actors[0].country, second.actors[0].resolved_by) == ("RUS", "span")
    assert (second.actors[1].country, second.actors[1].resolved_by) == ("UKR", "document")


@pytest.mark.parametrize("span", ["Moscow-backed separatists", "pro-Russian separatists", "Russian-backed separatists"])
def test_an_affiliation_names_a_backer_not_a_nationality(resolver, span):
    sentence = f"{span} attacked a checkpoint."
    assert resolve(resolver, span, sentence, document_country="UKR") == ("UKR", "REB", None, "document")


def test_a_place_name_in_a_persons_name_is_no_country(resolver):
    assert resolve(resolver, "Bishop Emilio Santos", document_country="PHL") == ("PHL", "REL", None, "document")


def test_every_sector_the_resolver_gives_is_a_codebook_code(resolver):
    gold = read_gold()
    for output in resolve_gold_spans(resolver, gold):
        assert {sector for _, sector, _, _ in output.actors.values()} <= set(SECTORS)


# --- places --------------------------------------------------------------------------------------
def test_georgia_is_the_country_unless_the_document_is_american(resolver):
    assert ("Georgia", "country", "GEO") in places(resolver, "Protesters in Tbilisi said Georgia must stay on course.")
    assert ("Georgia", "region", "USA") in places(resolver, "Teachers rallied in Atlanta. Georgia lawmakers will vote.")
    assert ("Georgia", "country", "GEO") in places(resolver, "Georgia accused Russia of moving the border.")


def test_paris_texas_and_paris(resolver):
    assert places(resolver, "Residents of Paris, Texas, opposed the closure.")[:2] == [
        ("Paris", "city", "USA"), ("Texas", "region", "USA")
    ]
    assert places(resolver, "Diplomats met in Paris on Monday.") == [("Paris", "city", "FRA")]


def test_tripoli_is_libyas_unless_the_document_is_about_lebanon(resolver):
    assert places(resolver, "Militias clashed in Tripoli.") == [("Tripoli", "city", "LBY")]
    found = places(resolver, "Protesters blocked roads in Tripoli. The Lebanese army deployed from Beirut.")
    assert ("Tripoli", "city", "LBN") in found


def test_a_small_city_needs_its_country_named_elsewhere(resolver):
    assert places(resolver, "Gunfire was heard in Monguno.") == []  # 20,000 people: no evidence
    assert ("Monguno", "city", "NGA") in places(resolver, "Nigerian troops said gunfire was heard in Monguno.")


def test_alternate_names_of_big_cities_and_not_of_small_ones(resolver):
    analysis = resolver.analyse("Shelling was reported in Kiev.", [(0, 30)])
    (kiev,) = resolver.sentence_locations(analysis, 0, 30)[0]
    assert (kiev.text, kiev.country, kiev.geonames_id) == ("Kiev", "UKR", 703448)  # GeoNames' Kyiv
    assert kiev.latitude == pytest.approx(50.45, abs=0.05) and kiev.longitude == pytest.approx(30.52, abs=0.05)
    assert places(resolver, "Gunmen attacked a convoy near the town of Boni.") == []  # not Bonn


def test_what_is_not_a_place_mention(resolver):
    assert places(resolver, "Police said the Derna Mujahideen Shura Council had left.") == []  # inside a longer name
    assert places(resolver, "Libyan and Syrian officials met.") == []  # demonyms
    assert places(resolver, "Moscow-backed fighters advanced.") == []  # an affiliation
    assert places(resolver, "Military spokesman Abdulkarim Sabra said so. Sabra added more.") == []  # a surname


def test_countries_and_regions_have_no_coordinates(resolver):
    analysis = resolver.analyse("Fighting in Tigray spread into Ethiopia.", [(0, 40)])
    tigray, ethiopia = resolver.sentence_locations(analysis, 0, 40)[0]
    assert (tigray.kind, tigray.country, tigray.latitude, ethiopia.kind, ethiopia.latitude) == ("region", "ETH", None, "country", None)
    assert ethiopia.geonames_id == 337996


def test_an_upper_case_dateline_is_a_place(resolver):
    assert places(resolver, "TBILISI, May 14 (Newswire) - Police used tear gas.")[0] == ("TBILISI", "city", "GEO")


# --- event country -------------------------------------------------------------------------------
def test_event_country_rules(resolver):
    text = (
        "Libya's army shelled militants. "  # no locative; one country
        "Syrian and Libyan envoys met in Cairo on Monday. "  # the locative place wins
        "The group established a stronghold in the central coastal city of Sirte. "  # lower-case words between
        "France and Germany condemned Russia. "  # several countries, none the dominant one: null
        "He made no comment."  # no place: the dominant country
    )
    assert event_countries(resolver, text) == ["LBY", "EGY", "LBY", None, "LBY"]


def test_no_place_in_the_document_gives_no_event_country(resolver):
    assert event_countries(resolver, "He made no comment. Nobody did.") == [None, None]


# --- offsets -------------------------------------------------------------------------------------
def articles():
    files = sorted((SAMPLE_DATA / "articles").glob("*.txt")) + ([DERNA] if DERNA.is_file() else [])
    return [path.read_text(encoding="utf-8") for path in files] + [document.text for document in read_gold()]


def test_place_offsets_are_document_slices_inside_their_sentence(resolver):
    for text in articles() + ["  Kiev\u2019s  forces\n\n  left\tDerna\u2019s   port.  ", "U.S.-backed forces reached Raqqa."]:
        spans = [(s.char_start, s.char_end) for s in SentenceSplitter().split(text)]
        analysis = resolver.analyse(text, spans)
        for start, end in spans:
            previous = start
            for place in resolver.sentence_locations(analysis, start, end)[0]:
                assert text[place.char_start : place.char_end] == place.text
                assert start <= place.char_start < place.char_end <= end and place.char_start >= previous
                previous = place.char_end


# --- tables and config ---------------------------------------------------------------------------
def test_every_team_table_loads_and_says_something():
    files = default_table_files()
    assert {path.stem for path in files} >= {"countries", "demonyms", "organisations", "regions", "sectors", "not_places"}
    for path in files:
        assert read_table_file(path).model_dump(exclude_defaults=True), path


def test_a_users_table_extends_and_overrides_the_teams(tmp_path):
    table = tmp_path / "ours.yaml"
    table.write_text(
        "demonyms: {SRB: [Srpski]}\n"
        "sector_words: {COP: {strong: [deputies]}}\n"
        "organisations:\n"
        "  UN: {names: [United Nations], sector: IGO, country: USA}\n"
        "  Blue Brigade: {names: [], sector: REB, country: LBY}\n"
        "not_places: [Tripoli]\n",
        encoding="utf-8",
    )
    ours = resolver_for(ResolutionConfig(tables=[str(table)]))
    assert resolve(ours, "Srpski soldiers") == ("SRB", "MIL", None, "span")  # extended
    assert resolve(ours, "sheriff's deputies")[1] == "COP"  # a word moved to another sector (the team's: LEG)
    assert resolve(ours, "the UN") == ("USA", "IGO", "UN", "span")  # an entry replaced
    assert resolve(ours, "the Blue Brigade") == ("LBY", "REB", None, "span")
    assert places(ours, "Militias clashed in Tripoli.") == []
    assert load_tables([table]).files[-1] == str(table)


@pytest.mark.parametrize(
    "content, message",
    [
        ("sector_words: {XYZ: {strong: [x]}}\n", "unknown sector code(s) XYZ"),
        ("organisations: {Foo: {sector: ABC}}\n", "organisations.Foo.sector: unknown sector code 'ABC'"),
        ("demonyms: {ZZZ: [Zed]}\n", "demonyms.ZZZ: 'ZZZ' is not an ISO 3166-1 alpha-3 code"),
        ("regions: {Foo: {country: XX}}\n", "regions.Foo.country: 'XX' is not an ISO 3166-1 alpha-3 code"),
        ("places: []\n", "unknown key 'places'"),
        ("- a list\n", "a resolution table is a mapping of sections"),
    ],
)
def test_a_bad_table_is_an_error_naming_the_file_and_key(tmp_path, content, message):
    table = tmp_path / "bad.yaml"
    table.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        read_table_file(table)
    assert str(table) in str(error.value) and message in str(error.value)


def test_the_config_section_is_typed_and_off_means_no_resolver(tmp_path):
    from conflict_events.config import load_config

    config = load_config(REPO_ROOT / "configs" / "quickstart.yaml", overrides=["inference.resolution.enabled=false"])
    assert config.inference.resolution == ResolutionConfig(enabled=False)
    assert resolver_for(config.inference.resolution) is None
    with pytest.raises(ConfigError, match="unknown key 'inference.resolution.table'"):
        load_config(REPO_ROOT / "configs" / "quickstart.yaml", overrides=["inference.resolution.table=[]"])
    assert InferenceConfig().resolution.enabled is True


# --- the predictor fills the fields in, or leaves them null ---------------------------------------------
def test_the_predictor_fills_the_resolution_fields_and_leaves_them_null_when_off(tiny_encoder_dir, tmp_path):
    from conflict_events.inference.predictor import ModelIdentity, Predictor
    from conflict_events.inference.testing import save_random_joint_model
    from conflict_events.model import load_joint_model
    from conflict_events.schema import Document
    from conftest import assert_offsets_hold

    loaded = load_joint_model(save_random_joint_model(tiny_encoder_dir, tmp_path / "model"))
    document = Document("d", "Libyan war planes attacked militants in Derna. The eastern government confirmed the strikes.")
    on = Predictor(loaded, InferenceConfig(), ModelIdentity("m")).predict_documents([document])
    assert_offsets_hold(document, on)
    assert [(p.text, p.country) for p in on[0].locations] == [("Derna", "LBY")]
    assert [r.event_country for r in on] == ["LBY", "LBY"]
    assert all(a.sector in SECTORS and a.resolved_by in ("span", "sentence", "document") for r in on for a in r.actors)
    off_settings = InferenceConfig(resolution=ResolutionConfig(enabled=False))
    off = Predictor(loaded, off_settings, ModelIdentity("m")).predict_documents([document])
    assert all(r.locations is None and r.event_country is None for r in off)
    assert all((a.country, a.sector, a.org, a.resolved_by) == (None,) * 4 for r in off for a in r.actors)
    assert [r.actors for r in off] == [tuple(a.__class__(a.role, a.text, a.char_start, a.char_end, a.score) for a in r.actors) for r in on]


# --- the gold set and the evaluation -------------------------------------------------------------
def test_the_gold_set_is_built_from_its_source_and_is_big_enough():
    result = subprocess.run([sys.executable, str(REPO_ROOT / "data" / "resolution_gold" / "build_gold.py"), "--check"])
    assert result.returncode == 0, "data/resolution_gold/gold.jsonl is stale: run build_gold.py"
    gold = read_gold(DEFAULT_GOLD)  # checks every offset
    actors = [a for d in gold for group in d.actors for a in group]
    assert len(actors) >= 150 and sum(len(d.places) for d in gold) >= 80
    assert all(a.sector in SECTORS for a in actors)


def test_scores_count_unmatched_spans_sentences_and_places_as_wrong():
    text = "Libyan troops shelled Derna. He left."
    gold = [
        GoldDocument(
            "g", text, ((0, 28, "LBY"), (29, 37, "LBY")),
            ((GoldActor(0, 13, "Libyan troops", "LBY", "MIL", None),), (GoldActor(29, 31, "He", None, "UNK", None),)),
            (GoldPlace(22, 27, "Derna", "LBY", "city"),),
        )
    ]
    perfect = ResolvedDocument([(0, 28, "LBY"), (29, 37, "LBY")], {(0, 13): ("LBY", "MIL", None, "span"), (29, 31): (None, "UNK", None, None)}, {(22, 27): "LBY"})
    report = score(gold, [perfect])
    assert (report["country_accuracy"], report["sector_accuracy"], report["sector_macro_f1"]) == (1.0, 1.0, 1.0)
    assert (report["null_country_precision"], report["place_f1"], report["event_country_accuracy"]) == (1.0, 1.0, 1.0)
    partial = ResolvedDocument([(0, 37, "LBY")], {(0, 6): ("LBY", "GOV", None, "span")}, {(22, 28): "LBY"})
    report = score(gold, [partial])
    assert report["actor_spans_matched"] == 0 and report["country_accuracy"] == 0.0 and report["sector_macro_f1"] == 0.0
    assert report["place_f1"] == 0.0 and report["event_country_accuracy"] == 0.0


def test_evaluate_resolution_command_reports_every_metric(tmp_path):
    from typer.testing import CliRunner

    from conflict_events.cli import app

    output = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["evaluate-resolution", "--output", str(output)])
    assert result.exit_code == 0, result.output
    for line in ("country accuracy:", "sector accuracy:", "sector macro-F1:", "null-country precision:", "place mentions:",
                 "event-country accuracy:"):
        assert line in result.output
    report = json.loads(output.read_text())["gold_spans"]
    assert report["actor_spans"] == report["actor_spans_matched"] >= 150
    assert 0.0 < report["country_accuracy"] <= 1.0


def test_evaluate_resolution_end_to_end_on_a_model(tiny_encoder_dir, tmp_path):
    from typer.testing import CliRunner

    from conflict_events.cli import app
    from conflict_events.inference.testing import save_random_joint_model

    model = save_random_joint_model(tiny_encoder_dir, tmp_path / "model")
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(DEFAULT_GOLD.read_text(encoding="utf-8").splitlines(keepends=True)[:3]), encoding="utf-8")
    output = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["evaluate-resolution", "--gold", str(gold), "--model", str(model), "-o", str(output)])
    assert result.exit_code == 0, result.output
    reports = json.loads(output.read_text())
    assert "end to end" in result.output and set(reports) == {"gold_spans", "predicted_spans"}
    assert reports["predicted_spans"]["actor_spans"] == reports["gold_spans"]["actor_spans"]


def test_the_resolution_package_imports_no_inference_training_or_cli():
    code = (
        "import sys, conflict_events.resolution.evaluation, conflict_events.resolution as r; "
        "print([m for m in sys.modules if m.startswith(('conflict_events.training', 'conflict_events.inference', "
        "'conflict_events.cli', 'mlflow'))])"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_a_gold_file_with_a_wrong_offset_is_refused(tmp_path):
    from conflict_events.errors import DataError

    line = json.loads(DEFAULT_GOLD.read_text(encoding="utf-8").splitlines()[0])
    line["places"][0]["char_start"] += 1
    bad = tmp_path / "gold.jsonl"
    bad.write_text(json.dumps(line) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="do not give"):
        read_gold(Path(bad))
