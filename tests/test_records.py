"""The sentence record is defined once: the Arrow schema, the Spark DDL, the MLflow signature, the JSON form
and the docs all agree with its field table, and the Parquet and Spark schemas are exactly the ones the
batch job and the Spark engine have always used."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pytest

from conflict_events.records import (
    ACTOR_FIELDS,
    PLACE_FIELDS,
    RECORD_COLUMNS,
    RECORD_FIELDS,
    ActorMention,
    PlaceMention,
    SentenceRecord,
    arrow_schema,
    arrow_table,
    spark_ddl,
)
from conftest import REPO_ROOT

RECORD = SentenceRecord(
    doc_id="derna-1",
    sentence_index=0,
    char_start=0,
    char_end=46,
    text="Libyan war planes attacked militants in Derna.",
    event_type="material_conflict",
    event_code=4,
    event_types=("material_conflict",),
    event_scores={"neutral": 0.25, "material_conflict": 0.75},
    actors=(
        ActorMention("source", "Libyan war planes", 0, 17, 0.5, country="LBY", sector="MIL", org=None, resolved_by="span"),
        ActorMention("target", "militants", 27, 36, 0.25, country="LBY", sector="REB", org=None, resolved_by="sentence"),
    ),
    model_uri="models:/conflict-events@champion",
    model_version="3",
    locations=(PlaceMention("Derna", 40, 45, "city", "LBY", 87205, 32.76704, 22.63669),),
    event_country="LBY",
    story_id="derna-1",
    duplicate_of=None,
)
# A multilabel model that decides no class, on a model without a registry version, resolution off.
UNDECIDED = SentenceRecord(
    doc_id="d", sentence_index=2, char_start=5, char_end=9, text="Calm", event_type=None, event_code=None,
    event_types=(), event_scores={"neutral": 0.1}, actors=(), model_uri="pyfunc", model_version=None,
)


def top_level_fields(struct_ddl: str) -> list[str]:
    """``name:type`` entries of a Spark ``struct<...>`` DDL, split at its own commas only."""
    assert struct_ddl.startswith("struct<") and struct_ddl.endswith(">")
    entries, depth, current = [], 0, ""
    for char in struct_ddl[len("struct<") : -1]:
        depth += {"<": 1, ">": -1}.get(char, 0)
        if char == "," and depth == 0:
            entries.append(current)
            current = ""
        else:
            current += char
    return entries + [current]


# --- the derived forms agree with the field table ----------------------------------------------------
def test_record_columns_are_the_field_table_in_order():
    assert RECORD_COLUMNS == tuple(f.name for f in RECORD_FIELDS)
    assert RECORD_COLUMNS[:5] == ("doc_id", "sentence_index", "char_start", "char_end", "text")
    assert {f.name for f in RECORD_FIELDS if f.nullable} == {
        "event_type", "event_code", "model_version", "locations", "event_country", "story_id", "duplicate_of"
    }
    # Issue 17's fields come last, each nullable: null when resolution (or stories) is off.
    assert RECORD_COLUMNS[-4:] == ("locations", "event_country", "story_id", "duplicate_of")
    assert {f.name for f in ACTOR_FIELDS if f.nullable} == {"country", "sector", "org", "resolved_by"}
    assert {f.name for f in PLACE_FIELDS if f.nullable} == {"geonames_id", "latitude", "longitude"}


def test_the_arrow_schema_has_the_field_tables_names_in_order_and_every_column_nullable():
    schema = arrow_schema()
    assert tuple(schema.names) == RECORD_COLUMNS
    actor = schema.field("actors").type.value_type
    assert [actor.field(i).name for i in range(actor.num_fields)] == [f.name for f in ACTOR_FIELDS]
    place = schema.field("locations").type.value_type
    assert [place.field(i).name for i in range(place.num_fields)] == [f.name for f in PLACE_FIELDS]
    # Nullable fields may hold null; the required ones are nullable too, as the Parquet files always were.
    assert all(field.nullable for field in schema)
    assert all(actor.field(i).nullable for i in range(actor.num_fields))


def test_the_spark_ddl_has_the_field_tables_names_in_order():
    entries = top_level_fields(spark_ddl())
    assert tuple(entry.split(":", 1)[0] for entry in entries) == RECORD_COLUMNS
    actors = dict(entry.split(":", 1) for entry in entries)["actors"]
    assert actors.startswith("array<") and actors.endswith(">")
    actor_entries = top_level_fields(actors[len("array<") : -1])
    assert [entry.split(":", 1)[0] for entry in actor_entries] == [f.name for f in ACTOR_FIELDS]
    locations = dict(entry.split(":", 1) for entry in entries)["locations"]
    place_entries = top_level_fields(locations[len("array<") : -1])
    assert [entry.split(":", 1)[0] for entry in place_entries] == [f.name for f in PLACE_FIELDS]


def test_the_mlflow_signature_has_the_field_tables_names_order_and_nullability():
    from conflict_events.tracking import model_signature

    outputs = model_signature().outputs.inputs
    assert tuple(column.name for column in outputs) == RECORD_COLUMNS
    assert [column.required for column in outputs] == [not f.nullable for f in RECORD_FIELDS]
    actor = next(column for column in outputs if column.name == "actors").type.dtype
    # MLflow keeps an object's properties sorted by name, whatever order they are given in.
    assert {p.name: p.required for p in actor.properties} == {f.name: not f.nullable for f in ACTOR_FIELDS}
    place = next(column for column in outputs if column.name == "locations").type.dtype
    assert {p.name: p.required for p in place.properties} == {f.name: not f.nullable for f in PLACE_FIELDS}


def test_the_json_form_has_the_field_tables_keys_in_order():
    data = RECORD.to_json()
    assert tuple(data) == RECORD_COLUMNS
    assert [tuple(actor) for actor in data["actors"]] == [tuple(f.name for f in ACTOR_FIELDS)] * 2
    assert [tuple(place) for place in data["locations"]] == [tuple(f.name for f in PLACE_FIELDS)]
    assert UNDECIDED.to_json()["locations"] is None and UNDECIDED.to_json()["event_country"] is None
    assert json.loads(json.dumps(data)) == data  # plain JSON values only
    assert data["event_types"] == ["material_conflict"]
    assert data["event_scores"] == {"neutral": 0.25, "material_conflict": 0.75}


@pytest.mark.parametrize("record", [RECORD, UNDECIDED])
def test_json_and_parquet_rows_round_trip(record):
    assert SentenceRecord.from_json(record.to_json()) == record
    assert SentenceRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    # A Parquet row comes back with the score map as (key, value) pairs.
    (row,) = arrow_table([record]).to_pylist()
    assert SentenceRecord.from_json(row) == record


def test_a_record_written_before_the_resolution_fields_reads_back_with_them_null():
    old = {k: v for k, v in UNDECIDED.to_json().items() if k not in ("locations", "event_country", "story_id", "duplicate_of")}
    assert SentenceRecord.from_json(old) == UNDECIDED
    actor = {k: v for k, v in RECORD.actors[0].to_json().items() if k not in ("country", "sector", "org", "resolved_by")}
    assert ActorMention.from_json(actor) == ActorMention("source", "Libyan war planes", 0, 17, 0.5)


def test_the_docs_tables_are_the_field_table_names_nullability_and_meaning():
    text = (REPO_ROOT / "docs" / "INFERENCE.md").read_text(encoding="utf-8")
    section = text[text.index("## Record format") :].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    documented = [(name.strip("| `"), "or null" in kind, meaning.rstrip(" |")) for name, kind, meaning in rows]
    assert documented == [(f.name, f.nullable, f.doc) for f in RECORD_FIELDS + ACTOR_FIELDS + PLACE_FIELDS]


# --- the derived forms are exactly what the outputs have always used, plus issue 17's fields at the end ---
def test_the_arrow_schema_is_the_one_parquet_files_have_always_had():
    actor = pa.struct(
        [("role", pa.string()), ("text", pa.string()), ("char_start", pa.int64()), ("char_end", pa.int64()),
         ("score", pa.float64()), ("country", pa.string()), ("sector", pa.string()), ("org", pa.string()),
         ("resolved_by", pa.string())]
    )
    place = pa.struct(
        [("text", pa.string()), ("char_start", pa.int64()), ("char_end", pa.int64()), ("kind", pa.string()),
         ("country", pa.string()), ("geonames_id", pa.int64()), ("latitude", pa.float64()), ("longitude", pa.float64())]
    )
    expected = pa.schema(
        [
            ("doc_id", pa.string()),
            ("sentence_index", pa.int64()),
            ("char_start", pa.int64()),
            ("char_end", pa.int64()),
            ("text", pa.string()),
            ("event_type", pa.string()),
            ("event_code", pa.int64()),
            ("event_types", pa.list_(pa.string())),
            ("event_scores", pa.map_(pa.string(), pa.float64())),
            ("actors", pa.list_(actor)),
            ("model_uri", pa.string()),
            ("model_version", pa.string()),
            ("locations", pa.list_(place)),
            ("event_country", pa.string()),
            ("story_id", pa.string()),
            ("duplicate_of", pa.string()),
        ]
    )
    assert arrow_schema().equals(expected, check_metadata=True)


def test_the_spark_ddl_is_the_one_the_spark_engine_has_always_parsed():
    assert spark_ddl() == (
        "struct<doc_id:string,sentence_index:bigint,char_start:bigint,char_end:bigint,text:string,"
        "event_type:string,event_code:bigint,event_types:array<string>,event_scores:map<string,double>,"
        "actors:array<struct<role:string,text:string,char_start:bigint,char_end:bigint,score:double,"
        "country:string,sector:string,org:string,resolved_by:string>>,"
        "model_uri:string,model_version:string,"
        "locations:array<struct<text:string,char_start:bigint,char_end:bigint,kind:string,country:string,"
        "geonames_id:bigint,latitude:double,longitude:double>>,event_country:string,story_id:string,duplicate_of:string>"
    )


# --- layering --------------------------------------------------------------------------------------
def test_the_record_module_imports_no_inference_training_cli_mlflow_or_spark():
    forbidden = ("conflict_events.training", "conflict_events.inference", "conflict_events.cli", "mlflow", "pyspark")
    code = (
        "import sys, conflict_events.records as r; r.arrow_schema(); r.spark_ddl(); "
        f"print([m for m in sys.modules if m.startswith({forbidden!r})])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
