"""The Spark engine (issue 19): executors read a folder URI with the local readers and predict with the local
predictor, so its records, errors, stories and events are the local engine's; a failed job leaves nothing
that looks complete, and a rerun refuses a complete output and replaces a failed one."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conflict_events.config import InferenceConfig, ResolutionConfig, StoriesConfig
from conflict_events.errors import DataError
from conflict_events.inference.batch import JobError, PredictJob, read_errors, read_events, read_records, run_predict_job
from conflict_events.inference.testing import save_random_joint_model
from conflict_events.schema import Document
from conflict_events.sources import FileBytes, ReaderSettings, read_file

pytest.importorskip("pyspark")

from conflict_events.inference import spark as spark_engine  # noqa: E402  (needs pyspark)

WIRE = (
    "Libyan war planes attacked militant positions in the eastern city of Derna on Thursday, killing at least "
    "twelve fighters, a military spokesman said. The strikes hit weapons depots and a training camp on the "
    "southern edge of the city, according to the spokesman, who said the operation would continue until the "
    "area was secured. Residents reported loud explosions near the port and columns of smoke over the old quarter."
)
COPY = "BENGHAZI (Reuters) - " + WIRE.replace("twelve", "15")
UNRELATED = (
    "Delegations of the two governments resumed talks in Geneva on Monday after a pause of three weeks. Both "
    "sides agreed to exchange prisoners next week and to meet again before the end of the month."
)
# One sentence of well over the tiny model's 32 sub-words: predicted in overlapping windows.
LONG = " ".join(f"the militia of district {i} attacked the police post of village {i} and burned two trucks" for i in range(4)) + "."
POISONED_LINES = [
    json.dumps({"id": "fine", "text": "Rebels shelled the airport."}).encode(),
    b"{broken",
    json.dumps({"id": "no-text"}).encode(),
    json.dumps({"id": "blank", "text": "   "}).encode(),
    b'{"id": "latin", "text": "caf\xe9"}',
    b"[1, 2]",
]
POISONED_ERRORS = [
    (2, None, "malformed JSON: Expecting property name enclosed in double quotes (column 2)"),
    (3, "no-text", "missing text field 'text'"),
    (4, "blank", "empty text"),
    (5, None, "undecodable bytes (not valid UTF-8) at byte offset 28"),
    (6, None, "not a JSON object (got list)"),
]


def write_archive(folder: Path) -> Path:
    """Every supported format in a folder with a subfolder, an unsupported file and one poisoned file."""
    (folder / "sub").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["wire", "talks"], "text": [WIRE, UNRELATED]}), folder / "a.parquet")
    rows = [("other", "Police fired tear gas at protesters in the capital."), ("copy", COPY), ("talks-again", UNRELATED + " Updated.")]
    (folder / "b.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in rows), encoding="utf-8")
    with gzip.open(folder / "c.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "long", "text": LONG}) + "\n" + json.dumps({"text": "No id here. Two sentences."}) + "\n")
    (folder / "d.csv").write_text('id,text\nc1,"Talks resumed in Geneva.\nBoth sides agreed."\nc2,Troops withdrew.\n', encoding="utf-8")
    (folder / "sub" / "e.txt").write_text("Army units retook the port on Friday.", encoding="utf-8")
    (folder / "sub" / "f.tsv").write_text("Two policemen were injured in Bihar.\t1\nA curfew was imposed.\t0\n", encoding="utf-8")
    (folder / "notes.md").write_text("not an archive", encoding="utf-8")
    (folder / "poisoned.jsonl").write_bytes(b"\n".join(POISONED_LINES) + b"\n")
    return folder


@pytest.fixture(scope="module")
def spark():
    session = spark_engine.spark_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def model_dir(tiny_encoder_dir, tmp_path_factory) -> Path:
    return save_random_joint_model(tiny_encoder_dir, tmp_path_factory.mktemp("joint"), max_length=32)


def without_source(item):
    """What a reader says of a record, but for the name of its file."""
    if isinstance(item, Document):
        return ("document", item.id, item.text, item.source.line)
    return ("bad", item.doc_id, item.reason, item.line)


def test_the_readers_say_the_same_of_a_files_bytes_as_of_the_file(tmp_path):
    archive = write_archive(tmp_path / "archive")
    (archive / "broken.jsonl.gz").write_bytes(b"not gzip at all")
    (archive / "broken.parquet").write_bytes(b"PAR1 and nothing else")
    (archive / "open-quote.csv").write_text('id,text\nq1,"never closed\nq2,two\n', encoding="utf-8")
    settings = ReaderSettings(max_document_chars=300)  # LONG and WIRE are over it: one more kind of bad record
    files = sorted(p for p in archive.rglob("*") if p.is_file() and p.suffix != ".md")
    for path in files:
        local = list(read_file(path, settings))
        fetched = list(read_file(FileBytes(f"hdfs://namenode{path}", path.read_bytes()), settings))
        assert [without_source(item) for item in fetched] == [without_source(item) for item in local], path.name
        assert {item.source if hasattr(item, "reason") else item.source.path for item in fetched} == {f"hdfs://namenode{path}"}
    assert len(files) == 10


def test_partitions_follow_the_shard_size_with_at_least_one_per_core():
    assert spark_engine._partitions(documents=1650, parallelism=2, shard_size=100) == 17
    assert spark_engine._partitions(documents=50, parallelism=8, shard_size=100) == 8
    assert spark_engine._partitions(documents=3, parallelism=8, shard_size=100) == 3
    assert spark_engine._partitions(documents=0, parallelism=2, shard_size=100) == 1


@pytest.mark.slow
def test_spark_reads_a_folder_uri_on_the_executors_and_gives_the_local_engines_output(spark, model_dir, tmp_path):
    archive = write_archive(tmp_path / "archive")
    # Not the defaults: the records below equal the local engine's only if the executors ran this section.
    inference = InferenceConfig(backend="torch", batch_size=3, window_overlap=4, shard_size=4)
    local = tmp_path / "local"
    run_predict_job(PredictJob.create(str(model_dir), [str(archive)], inference), local, progress=False)

    summary = spark_engine.run_spark_job(str(model_dir), [archive.as_uri()], tmp_path / "spark", inference=inference, spark=spark)

    expected, actual = read_records(local), read_records(tmp_path / "spark")
    assert (summary.documents, summary.errors, summary.sentences) == (13, 5, len(expected))

    def exact(record):
        return {k: v for k, v in record.items() if k not in ("event_scores", "actors")} | {
            "actors": [{k: v for k, v in a.items() if k != "score"} for a in record["actors"]]
        }

    assert [exact(r) for r in actual] == [exact(r) for r in expected]
    for got, want in zip(actual, expected):
        # Batches differ between the engines, and so does padding: scores agree to float32 precision.
        assert got["event_scores"] == pytest.approx(want["event_scores"], abs=1e-5)
        assert [a["score"] for a in got["actors"]] == pytest.approx([a["score"] for a in want["actors"]], abs=1e-5)
    # ... and the window overlap matters for the long sentence: another section would not give these records.
    other = tmp_path / "local-overlap-0"
    run_predict_job(PredictJob.create(str(model_dir), [str(archive)], inference.model_copy(update={"window_overlap": 0})), other, progress=False)
    overlap_0 = [r["event_scores"] for r in read_records(other) if r["doc_id"] == "long"]
    overlap_4 = [r["event_scores"] for r in actual if r["doc_id"] == "long"]
    assert max(abs(a[name] - b[name]) for a, b in zip(overlap_0, overlap_4) for name in a) > 1e-4

    # The poisoned file's records are in the errors dataset with file and line; the others read as locally.
    uri = (archive / "poisoned.jsonl").as_uri().replace("file:///", "file:/")
    errors = read_errors(tmp_path / "spark")
    assert [(e["line"], e["id"], e["reason"]) for e in errors if e["source"] == uri] == POISONED_ERRORS
    assert errors == [{**e, "source": "file:" + e["source"]} for e in read_errors(local)]
    assert sorted(p.name for p in (tmp_path / "spark").iterdir()) == ["errors", "events", "manifest.json", "records"]

    # Stories (a wire story and its copy across two files) and the events table, as the local engine's.
    def stories(output):
        return [(r["doc_id"], r["sentence_index"], r["story_id"], r["duplicate_of"]) for r in read_records(output)]

    assert stories(tmp_path / "spark") == stories(local)
    assert {doc: (story, copy_of) for doc, _, story, copy_of in stories(local) if doc in ("wire", "copy", "talks-again")} == {
        "wire": ("wire", None), "copy": ("wire", "wire"), "talks-again": ("talks", "talks"),
    }
    assert read_events(tmp_path / "spark") == read_events(local) != []

    manifest = json.loads((tmp_path / "spark" / "manifest.json").read_text(encoding="utf-8"))
    local_manifest = json.loads((local / "manifest.json").read_text(encoding="utf-8"))
    assert (manifest["status"], manifest["engine"], manifest["backend"]["ran"]) == ("complete", "spark", "torch")
    assert manifest["records"] == {"dir": "records", "format": "parquet", "partitions": 4}
    assert len(list((tmp_path / "spark" / "records").glob("part-*"))) == 4
    assert manifest["totals"] == local_manifest["totals"]
    assert manifest["events"]["rows"] == len(read_events(local))
    assert [f["path"] for f in manifest["inputs"]] == ["file:" + f["path"] for f in local_manifest["inputs"]]
    assert [f["path"].rsplit("/", 1)[1] for f in manifest["skipped"]] == ["notes.md"]
    assert manifest["job"]["window_overlap"] == 4 and manifest["model"]["version"].startswith("sha256:")


@pytest.mark.slow
def test_a_registry_alias_is_pinned_on_the_driver_and_the_executors_run_its_shipped_copy_with_the_jobs_backend(
    spark, mlflow_tracking, model_dir, tmp_path, monkeypatch
):
    from test_inference_batch import register_version

    import mlflow

    register_version("m", model_dir)
    mlflow.MlflowClient().set_registered_model_alias("m", "champion", "1")
    archive = tmp_path / "in.jsonl"
    archive.write_text("".join(json.dumps({"id": f"d{i}", "text": WIRE}) + "\n" for i in range(2)), encoding="utf-8")
    inference = InferenceConfig(
        backend="onnx", stories=StoriesConfig(enabled=False), resolution=ResolutionConfig(enabled=False)
    )
    # As on a cluster: the model travels as a zip through SparkContext.addFile, not by the driver's path.
    monkeypatch.setattr(spark_engine, "_ships_model", lambda session: True)
    # The onnx backend exports the model into this cache when a Python worker loads it: a file there is
    # the executors' doing (the driver never loads the model). Functions built from now on carry the variable.
    cache = tmp_path / "cache"
    spark.sparkContext.environment["CONFLICT_EVENTS_CACHE"] = str(cache)
    try:
        output = (tmp_path / "out").as_uri()
        summary = spark_engine.run_spark_job("models:/m@champion", [str(archive)], output, inference=inference, spark=spark)
    finally:
        del spark.sparkContext.environment["CONFLICT_EVENTS_CACHE"]

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert (manifest["model"]["requested"], manifest["model"]["uri"], manifest["model"]["version"]) == (
        "models:/m@champion", "models:/m/1", "1"
    )
    assert {(r["model_uri"], r["model_version"]) for r in read_records(tmp_path / "out")} == {("models:/m/1", "1")}
    assert manifest["backend"] == {"requested": "onnx", "ran": "onnx", "reason": "as requested"}
    assert summary.backend == "onnx: as requested"
    assert list((cache / "onnx").glob("*.onnx")), "the executors did not run the onnx backend"


@pytest.mark.slow
def test_a_failed_job_leaves_no_output_that_looks_complete_and_a_rerun_replaces_it(spark, model_dir, tmp_path, monkeypatch):
    archive = tmp_path / "in.jsonl"
    archive.write_text("".join(json.dumps({"id": f"d{i}", "text": UNRELATED}) + "\n" for i in range(3)), encoding="utf-8")
    inference = InferenceConfig(backend="torch", stories=StoriesConfig(enabled=False), resolution=ResolutionConfig(enabled=False))
    output = tmp_path / "out"

    def run():
        return spark_engine.run_spark_job(str(model_dir), [str(archive)], str(output), inference=inference, spark=spark)

    def state() -> tuple[str, list[str]]:
        manifest = json.loads((output / "manifest.json").read_text(encoding="utf-8"))
        return manifest["status"], sorted(os.listdir(output))

    # Every prediction task fails (Spark gives up on the job): nothing but the manifest saying so is left.
    spark.sparkContext.environment[spark_engine.FAIL_ENV] = "predict"
    try:
        with pytest.raises(Exception, match=f"{spark_engine.FAIL_ENV}=predict"):
            run()
    finally:
        del spark.sparkContext.environment[spark_engine.FAIL_ENV]
    assert state() == ("failed", ["manifest.json"])

    # The driver fails in the middle of the commit (errors/ and events/ renamed, records/ not): the same.
    monkeypatch.setenv(spark_engine.FAIL_ENV, "commit:2")
    with pytest.raises(RuntimeError, match="commit:2"):
        run()
    assert state() == ("failed", ["manifest.json"])
    monkeypatch.delenv(spark_engine.FAIL_ENV)

    # A rerun into the failed job's output replaces it (through the CLI, which takes the active session).
    from conflict_events.cli import app

    result = CliRunner().invoke(
        app, ["predict", "--engine", "spark", "-m", str(model_dir), "-i", str(archive), "-o", str(output), "--format", "jsonl",
              "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert "documents: 3" in result.output
    assert state() == ("complete", ["errors", "events", "manifest.json", "records"])
    assert [r["doc_id"] for r in read_records(output)][::2] == ["d0", "d1", "d2"]

    # A complete output is refused, and so is one a job may still be writing.
    with pytest.raises(JobError) as refused:
        run()
    assert str(refused.value) == (
        f"file:{output} already holds a complete Spark prediction job (manifest.json); choose another output "
        "directory, or delete this one to predict again"
    )
    running = tmp_path / "running"
    running.mkdir()
    (running / "manifest.json").write_text(json.dumps({"engine": "spark", "status": "running"}), encoding="utf-8")
    with pytest.raises(JobError, match=r"holds a Spark prediction job that is running, or whose driver was killed"):
        spark_engine.run_spark_job(str(model_dir), [str(archive)], str(running), inference=inference, spark=spark)


@pytest.mark.slow
def test_inputs_that_do_not_exist_or_cannot_be_read_are_refused_before_anything_is_written(spark, model_dir, tmp_path):
    (tmp_path / "notes.md").write_text("x", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as refused:
        spark_engine.run_spark_job(
            str(model_dir), [str(tmp_path / "missing.jsonl"), str(tmp_path / "notes.md"), str(tmp_path / "empty")],
            tmp_path / "out", spark=spark,
        )
    assert str(refused.value).splitlines() == [
        f"error: {tmp_path / 'missing.jsonl'}: no such file or directory",
        f"error: {tmp_path / 'notes.md'}: unsupported file type (expected one of .jsonl.gz, .jsonl, .csv, .parquet, .txt, .tsv)",
        f"error: {tmp_path / 'empty'}: no .jsonl.gz, .jsonl, .csv, .parquet, .txt, .tsv files in this directory",
    ]
    assert not (tmp_path / "out").exists()
