"""The batch job: archive readers, errors.jsonl, shards, the lock, and --resume after kill -9 (same inputs and
model, or refused naming what changed; added files appended as new shards with --allow-new-inputs)."""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import signal
import socket
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
from conflict_events.inference.batch import (
    PAUSE_ENV,
    PAUSE_MARKER_ENV,
    JobError,
    PredictJob,
    read_errors,
    read_events,
    read_records,
    run_predict_job,
)
from conflict_events.inference.lock import LockError, LockHolder
from conflict_events.inference.predictor import ModelIdentity
from conflict_events.records import SentenceRecord
from conflict_events.sources import BadRecord, ReaderSettings, read_documents
from conflict_events.inference.testing import save_random_joint_model
from conflict_events.schema import Document, SourceRef
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


# --- issue 15: nothing lost, nothing mixed ------------------------------------------------------------------
class EchoPredictor:
    """One record per document, no model: for tests about the job's bookkeeping, not its predictions."""

    identity = ModelIdentity("echo", "0")

    def __init__(self, fail_on: str | None = None):
        self.fail_on = fail_on

    def predict_by_document(self, documents):
        if any(document.id == self.fail_on for document in documents):
            raise RuntimeError(f"boom at {self.fail_on}")
        return [
            [SentenceRecord(document.id, 0, 0, len(document.text), document.text, None, None, (), {}, (), "echo", "0")]
            for document in documents
        ]


def write_docs(path: Path, prefix: str, count: int = 3) -> Path:
    return write_jsonl(path, [{"id": f"{prefix}{i}", "text": f"Report {prefix}{i}. Rebels attacked the town."} for i in range(count)])


def manifest_of(output: Path) -> dict:
    return json.loads((output / "manifest.json").read_text(encoding="utf-8"))


def as_killed_after(output: Path, committed: int) -> None:
    """The output directory as a job killed right after committing its first ``committed`` shards leaves it."""
    for folder in ("records", "errors"):
        for part in (output / folder).glob("part-*"):
            if int(part.name.split(".")[0].split("-")[1]) >= committed:
                part.unlink()
    (output / "errors.jsonl").unlink()
    manifest = manifest_of(output)
    manifest.update(status="running", shards=manifest["shards"][:committed])
    del manifest["totals"]
    (output / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def finished_job_over_b_and_c(tmp_path: Path, shard_size: int) -> tuple[Path, PredictJob]:
    """A finished job over a folder of b.jsonl and c.jsonl (3 documents each), written to tmp_path/out."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_docs(folder / "b.jsonl", "b")
    write_docs(folder / "c.jsonl", "c")
    job = PredictJob.create("echo", [str(folder)], InferenceConfig(shard_size=shard_size), output_format="jsonl")
    run_predict_job(job, tmp_path / "out", progress=False, predictor=EchoPredictor())
    return folder, job


def test_resume_refuses_a_folder_that_gained_a_file_and_names_it(tmp_path):
    """Issue 15, defect 1: a.jsonl added to a folder sorts first; the old resume skipped shards by index, so
    a0-a2 were lost and c0-c2 written twice."""
    folder, job = finished_job_over_b_and_c(tmp_path, shard_size=1)
    before = read_records(tmp_path / "out")
    write_docs(folder / "a.jsonl", "a")

    with pytest.raises(JobError) as refused:
        run_predict_job(job, tmp_path / "out", resume=True, progress=False, predictor=EchoPredictor())
    assert str(refused.value) == (
        f"cannot resume {tmp_path / 'out'}: its input files changed since the job started:\n"
        f"  added: {folder / 'a.jsonl'}\n"
        "rerun with the original inputs, or pass --allow-new-inputs to predict the added files as new shards "
        "after the committed ones"
    )
    assert read_records(tmp_path / "out") == before


def test_allow_new_inputs_appends_the_added_file_as_new_shards_and_leaves_committed_ones_alone(tmp_path):
    folder, job = finished_job_over_b_and_c(tmp_path, shard_size=2)
    committed = {path.name: path.read_bytes() for path in (tmp_path / "out" / "records").iterdir()}
    write_docs(folder / "a.jsonl", "a")

    summary = run_predict_job(
        job, tmp_path / "out", resume=True, allow_new_inputs=True, progress=False, predictor=EchoPredictor()
    )
    assert [r["doc_id"] for r in read_records(tmp_path / "out")] == ["b0", "b1", "b2", "c0", "c1", "c2", "a0", "a1", "a2"]
    assert (summary.documents, summary.documents_predicted, summary.files_added) == (9, 3, 1)
    for name, content in committed.items():
        assert (tmp_path / "out" / "records" / name).read_bytes() == content
    manifest = manifest_of(tmp_path / "out")
    assert [(Path(f["path"]).name, f["segment"]) for f in manifest["inputs"]] == [("b.jsonl", 0), ("c.jsonl", 0), ("a.jsonl", 1)]
    # c.jsonl's last document does not top up the last committed shard: a's documents start their own.
    assert [(s["index"], s["segment"], s["documents"]) for s in manifest["shards"]] == [
        (0, 0, 2), (1, 0, 2), (2, 0, 2), (3, 1, 2), (4, 1, 1)
    ]
    assert manifest["status"] == "complete"


def test_a_changed_or_removed_input_is_refused_even_with_allow_new_inputs(tmp_path):
    folder, job = finished_job_over_b_and_c(tmp_path, shard_size=2)
    write_docs(folder / "b.jsonl", "B")  # same size, other content
    (folder / "c.jsonl").unlink()

    with pytest.raises(JobError) as refused:
        run_predict_job(job, tmp_path / "out", resume=True, allow_new_inputs=True, progress=False, predictor=EchoPredictor())
    message = str(refused.value)
    assert f"  changed: {folder / 'b.jsonl'} (same size, different content: sha256:" in message
    assert f"  removed: {folder / 'c.jsonl'}\n" in message
    assert message.endswith(
        "the committed shards hold records of the files as they were: restore them, or start again in another "
        "output directory (--allow-new-inputs only appends new files)"
    )


def test_the_same_folder_named_another_way_is_the_same_input(tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    write_docs(folder / "b.jsonl", "b")
    first = PredictJob.create("echo", [str(folder)], InferenceConfig(shard_size=2), output_format="jsonl")
    run_predict_job(first, tmp_path / "out", progress=False, predictor=EchoPredictor())
    monkeypatch.chdir(tmp_path)
    again = PredictJob.create("echo", ["./in/"], InferenceConfig(shard_size=2), output_format="jsonl")
    summary = run_predict_job(again, tmp_path / "out", resume=True, progress=False, predictor=EchoPredictor())
    assert summary.shards_skipped == 2 and summary.documents_predicted == 0


def register_version(name: str, model_dir: Path) -> str:
    import mlflow

    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(model_dir), "model")
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException:
        pass
    return str(client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version)


def test_a_job_pins_the_alias_to_its_version_and_resume_refuses_after_the_alias_moved(
    mlflow_tracking, tiny_encoder_dir, tmp_path
):
    """Issue 15, defect 2: the old job stored `models:/m@champion` and resumed on whatever it named then."""
    import mlflow

    client = mlflow.MlflowClient()
    for seed in (0, 1):
        save_random_joint_model(tiny_encoder_dir, tmp_path / f"v{seed}", max_length=32, seed=seed)
        register_version("m", tmp_path / f"v{seed}")
    client.set_registered_model_alias("m", "champion", "1")
    inputs = [str(write_docs(tmp_path / "in.jsonl", "d"))]
    settings = InferenceConfig(shard_size=1, backend="torch")
    job = PredictJob.create("models:/m@champion", inputs, settings, output_format="jsonl")
    summary = run_predict_job(job, tmp_path / "out", progress=False)
    assert (summary.model_uri, summary.model_version) == ("models:/m/1", "1")
    pinned = manifest_of(tmp_path / "out")["model"]
    assert (pinned["requested"], pinned["uri"], pinned["version"]) == ("models:/m@champion", "models:/m/1", "1")
    assert pinned["fingerprint"].startswith("sha256:")

    as_killed_after(tmp_path / "out", committed=1)
    client.set_registered_model_alias("m", "champion", "2")
    with pytest.raises(JobError) as refused:
        run_predict_job(job, tmp_path / "out", resume=True, progress=False)
    assert str(refused.value) == (
        f"cannot resume {tmp_path / 'out'}: the model changed: the job runs models:/m/1 (version 1, pinned from "
        "--model models:/m@champion at its start), and --model models:/m@champion now resolves to models:/m/2 "
        "(version 2); resume with --model models:/m/1 to finish the job with its model, or start again in another "
        "output directory"
    )

    pinned_job = PredictJob.create("models:/m/1", inputs, settings, output_format="jsonl")
    run_predict_job(pinned_job, tmp_path / "out", resume=True, progress=False)
    records = read_records(tmp_path / "out")
    assert [r["doc_id"] for r in records] == ["d0", "d0", "d1", "d1", "d2", "d2"]
    assert {(r["model_uri"], r["model_version"]) for r in records} == {("models:/m/1", "1")}
    assert manifest_of(tmp_path / "out")["model"] == pinned


def test_resume_refuses_a_model_directory_whose_weights_changed(tiny_encoder_dir, tmp_path):
    model_dir = save_random_joint_model(tiny_encoder_dir, tmp_path / "model", max_length=32, seed=0)
    job = PredictJob.create(
        str(model_dir), [str(write_docs(tmp_path / "in.jsonl", "d"))], InferenceConfig(shard_size=1, backend="torch"), "jsonl"
    )
    run_predict_job(job, tmp_path / "out", progress=False)
    as_killed_after(tmp_path / "out", committed=1)
    before = manifest_of(tmp_path / "out")["model"]["fingerprint"]
    save_random_joint_model(tiny_encoder_dir, model_dir, max_length=32, seed=1)  # retrained in place
    with pytest.raises(JobError, match=rf"the weights of {model_dir} changed since the job started \({before} then, sha256:"):
        run_predict_job(job, tmp_path / "out", resume=True, progress=False)


def test_a_corrupt_parquet_file_is_one_file_level_error_and_the_job_completes(tmp_path, joint_model_dir):
    """Issue 15, defect 3: random bytes named .parquet raised ArrowInvalid out of the job."""
    archive = tmp_path / "archive"
    archive.mkdir()
    write_docs(archive / "good.jsonl", "g", count=1)
    (archive / "fake.parquet").write_bytes(random.Random(0).randbytes(3000))
    pq.write_table(pa.table({"id": ["t1"], "text": ["Cut short."]}), archive / "truncated.parquet")
    whole = (archive / "truncated.parquet").read_bytes()
    (archive / "truncated.parquet").write_bytes(whole[: len(whole) // 2])
    output = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["predict", "-m", str(joint_model_dir), "-i", str(archive), "-o", str(output), "--format", "jsonl", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "documents: 1" in result.output and "errors:    2" in result.output
    errors = read_errors(output)
    assert [(Path(e["source"]).name, e["line"], e["id"]) for e in errors] == [("fake.parquet", None, None), ("truncated.parquet", None, None)]
    assert all(e["reason"].startswith("cannot read the file: ArrowInvalid: ") for e in errors)
    assert "Parquet magic bytes not found" in errors[0]["reason"]
    assert manifest_of(output)["status"] == "complete"


def test_an_unterminated_csv_quote_is_one_error_at_its_line_naming_every_line_it_swallowed(tmp_path):
    """Issue 15, defect 4: the old reader made u2's row part of u1's text, silently."""
    path = tmp_path / "u.csv"
    path.write_text('id,text\nu1,"Rebels attacked the town.\nu2,Troops fired.\n', encoding="utf-8")
    assert list(read_documents([path])) == [
        BadRecord(
            str(path),
            2,
            "unterminated quoted field: the quote opened in the row starting on line 2 is never closed, so lines 2-3, "
            "to the end of the file, could not be read as rows",
        )
    ]


def test_a_closed_but_misplaced_csv_quote_is_an_error_and_the_rows_after_it_are_read(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('id,text\nq1,"Rebels" attacked\nq2,"Troops\nfired."\nq3,Talks,resumed\nq4,Calm.\n', encoding="utf-8")
    items = list(read_documents([path]))
    assert items[0] == BadRecord(str(path), 2, "malformed row (line 2): ',' expected after '\"'")
    assert items[1] == Document("q2", "Troops\nfired.", SourceRef(str(path), 3))
    assert items[2] == BadRecord(str(path), 5, "row has 3 fields, the header has 2 (line 5)", "q3")
    assert items[3] == Document("q4", "Calm.", SourceRef(str(path), 6))


def test_a_second_predict_on_a_running_jobs_output_is_refused_naming_it_and_its_lock_is_taken_over_once_it_is_dead(
    tmp_path, joint_model_dir
):
    """Issue 15, defect 7: two `predict --resume` on one output folder both ran."""
    inputs = write_docs(tmp_path / "in.jsonl", "d")
    arguments = ["predict", "-m", str(joint_model_dir), "-i", str(inputs), "-o", str(tmp_path / "out"), "--format", "jsonl", "--no-progress"]
    pid = kill_at("started", arguments, tmp_path, while_paused=lambda pid: check_refused(pid, arguments))
    resumed = CliRunner().invoke(app, [*arguments, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert f"lock:      took over the stale lock of pid {pid} on host {socket.gethostname()}" in resumed.output
    assert not (tmp_path / "out" / "job.lock").exists()


def check_refused(pid: int, arguments: list[str]) -> None:
    second = CliRunner().invoke(app, [*arguments, "--resume"])
    assert second.exit_code == 2
    output = arguments[arguments.index("-o") + 1]
    assert f"another predict job writes to {output}: job.lock is held by pid {pid} on host " in second.output
    assert "(on this host); wait for it to finish, or, if that process is dead, delete" in second.output


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "job.lock").write_text(LockHolder(4242, "elsewhere", time.time()).to_text(), encoding="utf-8")
    job = PredictJob.create("echo", [str(write_docs(tmp_path / "in.jsonl", "d"))], output_format="jsonl")
    with pytest.raises(LockError, match=r"held by pid 4242 on host elsewhere, since .* \(on another host: it cannot be checked"):
        run_predict_job(job, tmp_path / "out", progress=False, predictor=EchoPredictor())


def test_files_a_folder_holds_that_are_not_read_are_listed_and_counted(tmp_path, joint_model_dir):
    """Issue 15, defect 7: unsupported files inside an input folder were skipped without a word."""
    archive = tmp_path / "archive"
    archive.mkdir()
    write_docs(archive / "a.jsonl", "a", count=1)
    (archive / "notes.md").write_text("not an input", encoding="utf-8")
    (archive / "table.xlsx").write_bytes(b"PK")
    output = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["predict", "-m", str(joint_model_dir), "-i", str(archive), "-o", str(output), "--format", "jsonl", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "files:     1 read, 2 not read (listed under 'skipped' in manifest.json)" in result.output
    unsupported = "unsupported file type (not .jsonl.gz, .jsonl, .csv, .parquet, .txt, .tsv)"
    assert manifest_of(output)["skipped"] == [
        {"path": str(archive / "notes.md"), "reason": unsupported},
        {"path": str(archive / "table.xlsx"), "reason": unsupported},
    ]


def test_an_output_folder_inside_the_input_folder_is_not_read_back(tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    write_docs(archive / "a.jsonl", "a")
    job = PredictJob.create("echo", [str(archive)], InferenceConfig(shard_size=1), output_format="jsonl")
    run_predict_job(job, archive / "out", progress=False, predictor=EchoPredictor())
    summary = run_predict_job(job, archive / "out", resume=True, progress=False, predictor=EchoPredictor())
    assert (summary.files, summary.shards_skipped) == (1, 3)
    assert manifest_of(archive / "out")["skipped"] == [
        {"path": str(archive / "out"), "reason": "the job's own output directory (not read)"}
    ]


def test_a_missing_id_field_is_an_error_naming_the_file_and_the_fields_present(tmp_path):
    """Issue 15, defect 7: `--id-field article_id` on files without it fell back to <stem>-<line> silently."""
    (tmp_path / "a.csv").write_text("text,doc\nRebels attacked.,7\n", encoding="utf-8")
    write_jsonl(tmp_path / "b.jsonl", [{"text": "Troops fired.", "doc": "8"}, {"article_id": "b-2", "text": "Calm."}])
    pq.write_table(pa.table({"text": ["Talks resumed."]}), tmp_path / "c.parquet")
    (tmp_path / "d.txt").write_text("A text file has no id field.", encoding="utf-8")
    (tmp_path / "e.tsv").write_text("Neither has a TSV article.\t1\n", encoding="utf-8")
    items = list(read_documents(sorted(tmp_path.iterdir()), ReaderSettings(id_field="article_id")))
    assert items == [
        BadRecord(str(tmp_path / "a.csv"), 1, "no id field 'article_id' (--id-field); fields present: text, doc (header row)"),
        BadRecord(str(tmp_path / "b.jsonl"), 1, "no id field 'article_id' (--id-field); fields present: text, doc"),
        Document("b-2", "Calm.", SourceRef(str(tmp_path / "b.jsonl"), 2)),
        BadRecord(str(tmp_path / "c.parquet"), None, "no id field 'article_id' (--id-field); fields present: text"),
        Document("d", "A text file has no id field.", SourceRef(str(tmp_path / "d.txt"), 0)),
        Document("e-1", "Neither has a TSV article.", SourceRef(str(tmp_path / "e.tsv"), 1)),
    ]
    # Without --id-field the documented fallback stands: `id` where present, else <stem>-<line>.
    assert [item.id for item in read_documents([tmp_path / "a.csv"])] == ["a-2"]


def test_a_parquet_row_with_bytes_that_are_not_utf8_keeps_its_id(tmp_path):
    """Issue 15, defect 7: the quarantine record of such a row said "id": null."""
    binary = pa.array([b"Rebels attacked.", b"caf\xe9 bombing"], type=pa.binary())
    pq.write_table(pa.table({"id": ["pq-1", "pq-2"], "text": binary}), tmp_path / "binary.parquet")
    # A string column with invalid UTF-8 (other writers produce them): Arrow would fail the whole batch.
    pq.write_table(pa.table({"id": ["s-1", "s-2"], "text": binary.cast(pa.string(), safe=False)}), tmp_path / "string.parquet")
    items = list(read_documents([tmp_path / "binary.parquet", tmp_path / "string.parquet"]))
    reason = "undecodable bytes (not valid UTF-8) at byte offset 3"
    assert [(type(item).__name__, getattr(item, "id", None) or item.doc_id) for item in items] == [
        ("Document", "pq-1"), ("BadRecord", "pq-2"), ("Document", "s-1"), ("BadRecord", "s-2")
    ]
    assert items[1] == BadRecord(str(tmp_path / "binary.parquet"), 2, reason, "pq-2")


def test_ids_that_are_not_valid_text_are_quarantined_and_still_written(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"id,text\nx\xff1,Rebels attacked.\n")
    write_jsonl(tmp_path / "b.jsonl", [{"id": "\ud800", "text": "Troops fired."}])
    job = PredictJob.create("echo", [str(tmp_path / "a.csv"), str(tmp_path / "b.jsonl")], output_format="jsonl")
    run_predict_job(job, tmp_path / "out", progress=False, predictor=EchoPredictor())
    assert [(e["id"], e["reason"]) for e in read_errors(tmp_path / "out")] == [
        ("x\\udcff1", "the id has undecodable bytes (not valid UTF-8)"),
        ("\\ud800", "the id has undecodable bytes (not valid UTF-8)"),
    ]


def test_cli_errors_are_prefixed_once(tmp_path, joint_model_dir):
    """Issue 15, defect 7: a missing input printed `error: error: ...` (a DataError's issues carry their own)."""
    result = CliRunner().invoke(
        app, ["predict", "-m", str(joint_model_dir), "-i", str(tmp_path / "nothing.jsonl"), "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert result.output == f"error: {tmp_path / 'nothing.jsonl'}: no such file or directory\n"


def test_an_exception_during_the_job_marks_it_failed_with_the_message_and_resume_finishes_it(tmp_path):
    inputs = [str(write_docs(tmp_path / "in.jsonl", "d", count=5))]
    job = PredictJob.create("echo", inputs, InferenceConfig(shard_size=2), output_format="jsonl")
    with pytest.raises(RuntimeError, match="boom at d3"):
        run_predict_job(job, tmp_path / "out", progress=False, predictor=EchoPredictor(fail_on="d3"))
    manifest = manifest_of(tmp_path / "out")
    assert (manifest["status"], manifest["failure"], len(manifest["shards"])) == ("failed", "RuntimeError: boom at d3", 1)
    assert not (tmp_path / "out" / "job.lock").exists()

    summary = run_predict_job(job, tmp_path / "out", resume=True, progress=False, predictor=EchoPredictor())
    assert (summary.shards_skipped, summary.documents) == (1, 5)
    assert [r["doc_id"] for r in read_records(tmp_path / "out")] == [f"d{i}" for i in range(5)]
    assert manifest_of(tmp_path / "out")["status"] == "complete" and "failure" not in manifest_of(tmp_path / "out")


# --- crash tests: kill -9 at named points of a multi-file job (the job's test hook, inference/batch.py) ----
def kill_at(point: str, arguments: list[str], tmp_path: Path, while_paused=None) -> int:
    """Run the CLI in a subprocess until it reaches ``point``, then SIGKILL it; returns its pid."""
    marker, log = tmp_path / f"paused-at-{point}", tmp_path / f"killed-at-{point}.log"
    # The thread count is inherited, not set: records of the killed and of the in-process runs are compared
    # bit for bit, and a different number of threads sums floats in another order.
    environment = {**os.environ, PAUSE_ENV: point, PAUSE_MARKER_ENV: str(marker)}
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", "from conflict_events.cli import app; app()", *arguments],
            env=environment, stdout=subprocess.DEVNULL, stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 120
            while not marker.exists():
                assert process.poll() is None, f"the job exited before {point}: {log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, f"the job did not reach {point} in 120 s"
                time.sleep(0.02)
            if while_paused is not None:
                while_paused(process.pid)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()
            process.wait()
    return process.pid


@pytest.fixture(scope="module")
def crash_archive(tmp_path_factory) -> tuple[Path, Path]:
    """Three files (7 documents, 2 bad records) and the config that sets 2 documents a shard: 4 shards."""
    folder = tmp_path_factory.mktemp("crash") / "archive"
    folder.mkdir()
    write_jsonl(folder / "b.jsonl", [{"id": "b0", "text": ARTICLE}, {"id": "b1", "text": ""}, {"id": "b2", "text": "Troops fired."}])
    write_docs(folder / "c.jsonl", "c", count=3)
    (folder / "d.csv").write_text('id,text\nd0,"Talks, at last."\nd1,Calm.,extra\nd2,Police fired tear gas.\n', encoding="utf-8")
    config = folder.parent / "inference.yaml"
    config.write_text((REPO_ROOT / "configs" / "quickstart.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    return folder, config


def crash_arguments(model_dir: Path, inputs: Path, config: Path, output: Path) -> list[str]:
    return ["predict", "-m", str(model_dir), "-i", str(inputs), "-o", str(output), "--format", "jsonl", "--no-progress",
            "-c", str(config), "--set", "inference.shard_size=2", "--set", "inference.backend=torch",
            # the producer process, whatever `auto` picks on this machine: the crashes hit both processes
            "--set", "inference.producer=process"]


def invoke_ok(arguments: list[str]):
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def uninterrupted(crash_archive, joint_model_dir, tmp_path_factory) -> Path:
    folder, config = crash_archive
    output = tmp_path_factory.mktemp("uninterrupted") / "out"
    invoke_ok(crash_arguments(joint_model_dir, folder, config, output))
    return output


@pytest.mark.parametrize("point", ["started", "before-commit:0", "mid-commit:1", "after-commit:3", "before-complete"])
def test_a_job_killed_at_any_point_resumes_to_exactly_the_uninterrupted_output(
    point, crash_archive, uninterrupted, joint_model_dir, tmp_path
):
    folder, config = crash_archive
    arguments = crash_arguments(joint_model_dir, folder, config, tmp_path / "killed")
    kill_at(point, arguments, tmp_path)
    assert manifest_of(tmp_path / "killed")["status"] == "running"
    if point.startswith("mid-commit"):
        assert list((tmp_path / "killed" / "records").glob("part-00001.jsonl.tmp-*")), "killed mid-write"

    invoke_ok([*arguments, "--resume"])
    assert read_records(tmp_path / "killed") == read_records(uninterrupted)
    assert read_errors(tmp_path / "killed") == read_errors(uninterrupted)
    assert [r["doc_id"] for r in read_records(uninterrupted)].count("d2") == 1
    for folder_name in ("records", "errors"):
        assert sorted(p.name for p in (tmp_path / "killed" / folder_name).iterdir()) == [f"part-{i:05d}.jsonl" for i in range(4)]
    resumed, expected = manifest_of(tmp_path / "killed"), manifest_of(uninterrupted)
    assert resumed["status"] == "complete" and resumed["totals"] == expected["totals"]
    assert resumed["shards"] == expected["shards"]
    assert not (tmp_path / "killed" / "job.lock").exists()


def test_the_crash_jobs_run_a_producer_process_and_one_killed_without_it_resumes_to_the_same_output(
    crash_archive, uninterrupted, joint_model_dir, tmp_path
):
    """The crash tests above run a producer process; killed and resumed with the input side in the model's
    process, the job gives their output exactly."""
    assert manifest_of(uninterrupted)["last_run"]["producer"] == "process"
    folder, config = crash_archive
    killed = tmp_path / "killed"
    arguments = [*crash_arguments(joint_model_dir, folder, config, killed), "--set", "inference.producer=none"]
    kill_at("mid-commit:1", arguments, tmp_path)
    invoke_ok([*arguments, "--resume"])
    assert read_records(killed) == read_records(uninterrupted)
    assert read_errors(killed) == read_errors(uninterrupted)
    resumed, expected = manifest_of(killed), manifest_of(uninterrupted)
    assert (resumed["shards"], resumed["totals"]) == (expected["shards"], expected["totals"])
    assert resumed["last_run"]["producer"] == "none"


def test_a_file_added_after_a_crash_is_refused_or_appended_as_new_shards_never_mixed(
    crash_archive, uninterrupted, joint_model_dir, tmp_path
):
    source, config = crash_archive
    folder = tmp_path / "archive"
    shutil.copytree(source, folder)
    arguments = crash_arguments(joint_model_dir, folder, config, tmp_path / "killed")
    kill_at("mid-commit:1", arguments, tmp_path)
    write_docs(folder / "a.jsonl", "a", count=3)

    refused = CliRunner().invoke(app, [*arguments, "--resume"])
    assert refused.exit_code == 2
    assert f"its input files changed since the job started:\n  added: {folder / 'a.jsonl'}\n" in refused.output
    assert manifest_of(tmp_path / "killed")["status"] == "running" and not (tmp_path / "killed" / "errors.jsonl").exists()

    appended = invoke_ok([*arguments, "--resume", "--allow-new-inputs"])
    assert "files:     4 read, 1 added in this run as new shards, 0 not read" in appended.output
    alone = tmp_path / "alone"
    invoke_ok(crash_arguments(joint_model_dir, folder / "a.jsonl", config, alone))
    assert read_records(tmp_path / "killed") == read_records(uninterrupted) + read_records(alone)
    for part in sorted((tmp_path / "killed" / "records").iterdir()):
        origins = {json.loads(line)["doc_id"][0] for line in part.read_text(encoding="utf-8").splitlines()}
        assert origins <= {"a"} or not origins & {"a"}, f"{part.name} mixes the added file with the others: {origins}"

    (folder / "c.jsonl").write_text((folder / "c.jsonl").read_text(encoding="utf-8") + "\n", encoding="utf-8")
    changed = CliRunner().invoke(app, [*arguments, "--resume", "--allow-new-inputs"])
    assert changed.exit_code == 2 and f"  changed: {folder / 'c.jsonl'} (" in changed.output


@pytest.mark.parametrize("point", ["after-commit:0", "before-complete"])
def test_a_resumed_job_with_stories_split_across_shards_has_the_uninterrupted_story_ids_and_events(
    point, joint_model_dir, tmp_path
):
    from test_stories import COPY, UNRELATED, WIRE

    folder = tmp_path / "archive"
    folder.mkdir()
    # Two documents a shard: the wire story in shard 0, its copies in shards 1 and 2 (another file).
    write_jsonl(folder / "a.jsonl", [{"id": "wire", "text": WIRE}, {"id": "talks", "text": UNRELATED}])
    write_jsonl(folder / "b.jsonl", [{"id": "other", "text": ARTICLE}, {"id": "copy", "text": COPY},
                                     {"id": "talks-again", "text": UNRELATED + " Updated."}, {"id": "copy-2", "text": COPY}])
    config = tmp_path / "inference.yaml"
    config.write_text((REPO_ROOT / "configs" / "quickstart.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    arguments = crash_arguments(joint_model_dir, folder, config, tmp_path / "killed")
    uninterrupted = tmp_path / "uninterrupted"
    invoke_ok(crash_arguments(joint_model_dir, folder, config, uninterrupted))
    kill_at(point, arguments, tmp_path)
    invoke_ok([*arguments, "--resume"])

    expected = read_records(uninterrupted)
    assert read_records(tmp_path / "killed") == expected
    assert {r["doc_id"]: (r["story_id"], r["duplicate_of"]) for r in expected} == {
        "wire": ("wire", None), "talks": ("talks", None), "other": ("other", None),
        "copy": ("wire", "wire"), "talks-again": ("talks", "talks"), "copy-2": ("wire", "wire"),
    }
    assert read_events(tmp_path / "killed") == read_events(uninterrupted) != []
    assert manifest_of(tmp_path / "killed")["events"] == manifest_of(uninterrupted)["events"]
