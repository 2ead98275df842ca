"""Stories and events (issue 17 part 3): a wire story copied with small edits across input files gets one
story_id, duplicate_of on the copy, and the events table is the records' events, one row per distinct key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conflict_events.config import InferenceConfig, StoriesConfig
from conflict_events.inference.batch import PredictJob, read_events, read_records, run_predict_job
from conflict_events.inference.testing import save_random_joint_model
from conflict_events.stories import StoryIndex, event_rows, resolve_stories, shingles

WIRE = (
    "Libyan war planes attacked militant positions in the eastern city of Derna on Thursday, killing at least "
    "twelve fighters, a military spokesman said. The strikes hit weapons depots and a training camp on the "
    "southern edge of the city, according to the spokesman, who said the operation would continue until the "
    "area was secured. Residents reported loud explosions near the port and columns of smoke over the old "
    "quarter. A spokesman for the Shura council of Derna denied any losses and accused the army of targeting "
    "civilians, saying that two houses had been destroyed. The eastern government has been fighting Islamist "
    "groups in Derna for more than two years, and the city has been under siege since last summer. Aid "
    "agencies have warned of shortages of food, fuel and medicine, and the United Nations called on all sides "
    "to allow humanitarian access to the city and to protect civilians caught in the fighting."
)
# The same wire copy as another outlet runs it: a dateline added, one word changed, the last clause cut.
COPY = "BENGHAZI (Reuters) - " + WIRE.replace("twelve", "15").replace(" and to protect civilians caught in the fighting.", ".")
UNRELATED = (
    "Delegations of the two governments resumed talks in Geneva on Monday after a pause of three weeks. Both "
    "sides agreed to exchange prisoners next week and to meet again before the end of the month, the mediator "
    "told reporters outside the conference hall, adding that progress had been slow but real."
)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_shingles_are_lowercased_word_ngrams_and_a_short_text_is_one_shingle():
    assert shingles("Rebels SHELLED the airport, rebels shelled the airport!", 3)[:3] == [
        "rebels shelled the", "shelled the airport", "the airport rebels"
    ]
    assert shingles("Two words.", 5) == ["two words"]
    assert shingles(" ... ", 5) == []


def test_the_story_index_joins_a_wire_copy_to_the_first_document_and_leaves_an_unrelated_one_alone():
    index = StoryIndex(StoriesConfig())
    assigned = [index.assign(doc_id, text) for doc_id, text in [("w", WIRE), ("u", UNRELATED), ("c", COPY), ("c2", COPY)]]
    assert [(a.story_id, a.duplicate_of) for a in assigned] == [("w", None), ("u", None), ("w", "w"), ("w", "w")]
    # A document without words starts its own story.
    assert index.assign("empty", "...").duplicate_of is None


def test_resolve_stories_follows_chains_to_the_first_document_of_the_story():
    stories = resolve_stories(["a", "b", "c", "d"], {2: 1, 3: 2})
    assert [(s.story_id, s.duplicate_of) for s in stories] == [("a", None), ("b", None), ("b", "b"), ("b", "c")]


@pytest.fixture(scope="module")
def joint_model_dir(tiny_encoder_dir, tmp_path_factory) -> Path:
    return save_random_joint_model(tiny_encoder_dir, tmp_path_factory.mktemp("joint") / "model", max_length=32)


@pytest.mark.parametrize("output_format", ["parquet", "jsonl"])
def test_a_wire_story_copied_across_files_gets_one_story_id_and_the_events_table_counts_its_sentences(
    tmp_path, joint_model_dir, output_format
):
    archive = tmp_path / "archive"
    archive.mkdir()
    write_jsonl(archive / "a.jsonl", [{"id": "wire", "text": WIRE}, {"id": "talks", "text": UNRELATED}])
    write_jsonl(archive / "b.jsonl", [{"id": "copy", "text": COPY}])
    output = tmp_path / "out"
    job = PredictJob.create(str(joint_model_dir), [str(archive)], InferenceConfig(shard_size=2, backend="torch"), output_format)
    run_predict_job(job, output, progress=False)

    records = read_records(output)
    stories = {r["doc_id"]: (r["story_id"], r["duplicate_of"]) for r in records}
    assert stories == {"wire": ("wire", None), "talks": ("talks", None), "copy": ("wire", "wire")}
    events = read_events(output)
    assert events == [row.to_json() for row in event_rows(records)]
    every_sentence = {f"{r['doc_id']}:{r['sentence_index']}" for r in records if r["event_code"] is not None}
    assert {sentence for row in events for sentence in row["sentence_ids"]} == every_sentence
    assert all(row["count"] == len(row["sentence_ids"]) for row in events)
    assert {row["story_id"] for row in events} == {"wire", "talks"}
    keys = [tuple(row[k] for k in list(row)[:7]) for row in events]
    assert len(keys) == len(set(keys))
    manifest = json.loads((output / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["events"]["file"] == f"events.{output_format}" and manifest["events"]["rows"] == len(events)


def test_the_events_table_has_one_row_per_distinct_key_with_source_and_target_by_role_name():
    actor = {"text": "x", "char_start": 0, "char_end": 1, "score": 1.0, "org": None, "resolved_by": "span"}

    def record(doc_id, index, code, actors, story="s"):
        return {"doc_id": doc_id, "sentence_index": index, "event_code": code, "event_country": "LBY", "story_id": story,
                "actors": [{**actor, "role": role, "country": country, "sector": sector} for role, country, sector in actors]}

    army, rebels = ("source", "LBY", "MIL"), ("target", "LBY", "REB")
    rows = event_rows([
        record("a", 0, 4, [army, rebels]),
        record("a", 1, 4, [army, rebels, army]),
        record("b", 0, 4, [army]),
        record("b", 1, None, [army, rebels]),
        record("c", 0, 4, [("reciprocal", "EGY", "GOV")]),
    ])
    assert [row.to_json() for row in rows] == [
        {"story_id": "s", "event_code": 4, "source_country": "LBY", "source_sector": "MIL", "target_country": "LBY",
         "target_sector": "REB", "event_country": "LBY", "sentence_ids": ["a:0", "a:1"], "count": 2},
        {"story_id": "s", "event_code": 4, "source_country": "LBY", "source_sector": "MIL", "target_country": None,
         "target_sector": None, "event_country": "LBY", "sentence_ids": ["b:0"], "count": 1},
        {"story_id": "s", "event_code": 4, "source_country": None, "source_sector": None, "target_country": None,
         "target_sector": None, "event_country": "LBY", "sentence_ids": ["c:0"], "count": 1},
    ]


def test_stories_off_leaves_the_fields_null(tmp_path, joint_model_dir):
    archive = write_jsonl(tmp_path / "a.jsonl", [{"id": "wire", "text": WIRE}, {"id": "copy", "text": COPY}])
    inference = InferenceConfig(backend="torch", stories=StoriesConfig(enabled=False))
    run_predict_job(PredictJob.create(str(joint_model_dir), [str(archive)], inference), tmp_path / "out", progress=False)
    assert {(r["story_id"], r["duplicate_of"]) for r in read_records(tmp_path / "out")} == {(None, None)}


def test_the_docs_events_table_is_the_event_rows_field_table():
    from conflict_events.records import EVENT_FIELDS
    from conftest import REPO_ROOT

    text = (REPO_ROOT / "docs" / "INFERENCE.md").read_text(encoding="utf-8")
    section = text[text.index("### Stories and events") :].split("\n### ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    documented = [(name.strip("| `"), "or null" in kind, meaning.rstrip(" |")) for name, kind, meaning in rows]
    assert documented == [(f.name, f.nullable, f.doc) for f in EVENT_FIELDS]
