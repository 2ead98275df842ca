"""The batch job: archive readers, errors.jsonl, shards, and --resume after kill -9."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conflict_events.cli import app
from conflict_events.config import InferenceConfig
from conflict_events.inference.batch import JobError, PredictJob, read_errors, read_records, run_predict_job
from conflict_events.sources import BadRecord, read_documents
from conflict_events.inference.testing import save_random_joint_model
from conflict_events.schema import Document
from conftest import REPO_ROOT, SHARED_DATA

ARTICLE = (
    "Libyan war planes attacked militants in Derna on Thursday. The eastern government said the strikes "
    "hit weapons depots.\n\nResidents reported explosions near the port. A spokesman for the Shura council "
    "denied any losses and accused the army of targeting civilians."
)


@pytest.fixture(scope="module")
def joint_model_dir(tiny_encoder_dir, tmp_path_factory) -> Path:
    return save_random_joint_model(tiny_encoder_dir, tmp_path_factory.mktemp("joint") / "model", max_length=32)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_readers_cover_every_archive_format(tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    with gzip.open(archive / "a.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "gz-1", "text": "From gzip."}) + "\n")
    (archive / "b.csv").write_text('id,text\ncsv-1,"Two lines,\nquoted."\n,No id here.\n', encoding="utf-8")
    pq.write_table(pa.table({"text": ["From parquet.", None], "id": ["pq-1", "pq-2"]}), archive / "c.parquet")
    (archive / "d.txt").write_text("One document per file.", encoding="utf-8")
    (archive / "e.tsv").write_text('"An ""article"" here."\t0\t1\nSecond article.\t1\t0\n', encoding="utf-8")
    (archive / "ignored.md").write_text("not an input")

    items = list(read_documents([archive]))
    documents = [(item.id, item.text) for item in items if isinstance(item, Document)]
    assert documents == [
        ("gz-1", "From gzip."),
        ("csv-1", "Two lines,\nquoted."),
        ("b-4", "No id here."),
        ("pq-1", "From parquet."),
        ("d", "One document per file."),
        ("e-1", 'An "article" here.'),
        ("e-2", "Second article."),
    ]
    assert [item for item in items if isinstance(item, BadRecord)] == [
        BadRecord(str(archive / "c.parquet"), 2, "missing text field 'text'", "pq-2")
    ]


def test_globs_and_missing_inputs(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", [{"text": "B."}])
    write_jsonl(tmp_path / "a.jsonl", [{"text": "A."}])
    assert [d.id for d in read_documents([str(tmp_path / "*.jsonl")])] == ["a-1", "b-1"]
    with pytest.raises(Exception, match="nothing.jsonl: no such file or directory"):
        list(read_documents([tmp_path / "nothing.jsonl"]))


@pytest.mark.skipif(not (SHARED_DATA / "conflibert").is_dir(), reason="IndiaPoliceEvents not found")
def test_india_police_events_tsv_ids_come_from_stem_and_line():
    path = SHARED_DATA / "conflibert" / "IndiaPoliceEvents_docs" / "dev.tsv"
    documents = list(read_documents([path]))
    assert all(isinstance(d, Document) for d in documents)
    assert documents[0].id == "dev-1" and documents[0].text.startswith("This story is from March 9, 2002")
    assert len(documents) == 165


def test_poisoned_input_lands_in_errors_jsonl(tmp_path, joint_model_dir):
    poisoned = tmp_path / "poisoned.jsonl"
    huge = "x" * (InferenceConfig().max_document_chars + 1)
    poisoned.write_bytes(
        b"\n".join(
            [
                json.dumps({"id": "good-1", "text": ARTICLE}).encode(),
                b'{"id": "broken", "text": "unterminated',
                json.dumps({"id": "empty", "text": "   "}).encode(),
                b'{"id": "latin1", "text": "caf\xe9 bombing"}',
                json.dumps({"id": "huge", "text": huge}).encode(),
                json.dumps({"id": "no-text", "body": "wrong field"}).encode(),
                b"[1, 2]",
                json.dumps({"id": "number", "text": 42}).encode(),
                json.dumps({"id": "good-2", "text": "Talks resumed in Geneva."}).encode(),
            ]
        )
        + b"\n"
    )
    (tmp_path / "latin1.txt").write_bytes("Caf\u00e9 attack".encode("latin-1"))
    output = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["predict", "-m", str(joint_model_dir), "-i", str(poisoned), "-i", str(tmp_path / "latin1.txt"),
         "-o", str(output), "--format", "jsonl", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert "documents: 2" in result.output and "errors:    8" in result.output
    source = str(poisoned)
    assert read_errors(output) == [
        {"source": source, "line": 2, "id": None, "reason": "malformed JSON: Unterminated string starting at (column 26)"},
        {"source": source, "line": 3, "id": "empty", "reason": "empty text"},
        {"source": source, "line": 4, "id": None, "reason": "undecodable bytes (not valid UTF-8) at byte offset 29"},
        {"source": source, "line": 5, "id": "huge",
         "reason": f"text has {len(huge)} characters, over inference.max_document_chars=2000000"},
        {"source": source, "line": 6, "id": "no-text", "reason": "missing text field 'text'"},
        {"source": source, "line": 7, "id": None, "reason": "not a JSON object (got list)"},
        {"source": source, "line": 8, "id": "number", "reason": "text field 'text' is not a string (got int)"},
        {"source": str(tmp_path / "latin1.txt"), "line": None, "id": "latin1",
         "reason": "undecodable bytes (not valid UTF-8) at byte offset 3"},
    ]
    assert sorted({r["doc_id"] for r in read_records(output)}) == ["good-1", "good-2"]


def test_output_holds_one_job(tmp_path, joint_model_dir):
    inputs = [str(write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": ARTICLE}]))]
    job = PredictJob.create(str(joint_model_dir), inputs, InferenceConfig(shard_size=1))
    run_predict_job(job, tmp_path / "out", progress=False)
    with pytest.raises(JobError, match="already holds a prediction job"):
        run_predict_job(job, tmp_path / "out", progress=False)
    other = PredictJob.create(str(joint_model_dir), inputs, InferenceConfig(shard_size=2))
    with pytest.raises(JobError, match=r"started with different settings \(shard_size\)"):
        run_predict_job(other, tmp_path / "out", resume=True, progress=False)
    # Resuming a finished job redoes nothing and changes nothing.
    before = read_records(tmp_path / "out")
    summary = run_predict_job(job, tmp_path / "out", resume=True, progress=False)
    assert summary.documents_predicted == 0 and summary.shards_skipped == 1
    assert read_records(tmp_path / "out") == before


def test_resume_after_kill_9_equals_an_uninterrupted_run(tmp_path, joint_model_dir):
    rows = []
    for index in range(240):
        rows.append({"id": f"doc-{index:03d}", "text": f"Report {index}. {ARTICLE}"})
        if index % 50 == 7:
            rows.append({"id": f"bad-{index}", "text": ""})
    inputs = write_jsonl(tmp_path / "archive.jsonl", rows)
    config = tmp_path / "inference.yaml"
    config.write_text((REPO_ROOT / "configs" / "quickstart.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    arguments = ["predict", "-m", str(joint_model_dir), "-i", str(inputs), "--format", "parquet",
                 "-c", str(config), "--set", "inference.shard_size=4", "--batch-size", "8", "--no-progress"]

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-c", "from conflict_events.cli import app; app()", *arguments, "-o", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (killed / "records" / "part-00000.parquet").exists():
            assert process.poll() is None, "the job exited before writing a shard"
            assert time.monotonic() < deadline, "no shard after 120 s"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert not (killed / "errors.jsonl").exists(), "the job finished before it was killed"
    done_before = len(list((killed / "records").glob("part-*.parquet")))

    resumed = CliRunner().invoke(app, [*arguments, "-o", str(killed), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert f"({done_before} already done, skipped)" in resumed.output

    uninterrupted = tmp_path / "uninterrupted"
    result = CliRunner().invoke(app, [*arguments, "-o", str(uninterrupted)])
    assert result.exit_code == 0, result.output

    expected = read_records(uninterrupted)
    assert len({(r["doc_id"], r["sentence_index"]) for r in expected}) == len(expected)
    assert {r["doc_id"] for r in expected} == {row["id"] for row in rows if row["text"]}
    assert read_records(killed) == expected
    assert read_errors(killed) == read_errors(uninterrupted)
    assert len(read_errors(killed)) == 5
    assert sorted(p.name for p in (killed / "records").iterdir()) == sorted(
        p.name for p in (uninterrupted / "records").iterdir()
    )


def test_several_paths_may_follow_one_input_flag(tmp_path, joint_model_dir):
    """`--input a b` (the issue's syntax) reads both files, in the order given, like `-i a -i b`."""
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("Rebels shelled the port.", encoding="utf-8")
    second.write_text("The ministers met in Cairo.", encoding="utf-8")
    output = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["predict", "-m", str(joint_model_dir), "--input", str(first), str(second),
         "-o", str(output), "--format", "jsonl", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert [r["doc_id"] for r in read_records(output)] == ["first", "second"]
