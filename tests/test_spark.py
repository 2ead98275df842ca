"""The Spark engine (mlflow spark_udf in local mode) gives the local engine's records."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conflict_events.config import InferenceConfig
from conflict_events.inference.batch import PredictJob, read_errors, read_records, run_predict_job
from conflict_events.inference.testing import save_random_joint_model

pytest.importorskip("pyspark")

TEXTS = [
    "Libyan war planes attacked militants in Derna. The eastern government confirmed the strikes.",
    "Talks resumed in Geneva on Monday.\n\nBoth delegations agreed to exchange prisoners next week.",
    "Police fired tear gas at protesters in the capital, witnesses said, and dozens were arrested " * 3,
    "   ",
    "A short one.",
]


@pytest.mark.slow
def test_spark_engine_matches_the_local_engine(tiny_encoder_dir, tmp_path):
    from conflict_events.inference.spark import run_spark_job, spark_session

    model_dir = save_random_joint_model(tiny_encoder_dir, tmp_path / "joint", max_length=32)
    archive = tmp_path / "archive"
    archive.mkdir()
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(len(TEXTS))], "text": TEXTS}), archive / "a.parquet")
    (archive / "b.jsonl").write_text(
        json.dumps({"id": "j1", "text": "Rebels shelled the airport."}) + "\n{broken\n", encoding="utf-8"
    )
    inference = InferenceConfig(shard_size=2)
    local = tmp_path / "local"
    run_predict_job(PredictJob.create(str(model_dir), [str(archive)], inference), local, progress=False)

    spark = spark_session("local[2]")
    try:
        summary = run_spark_job(str(model_dir), [str(archive)], tmp_path / "spark", inference=inference, spark=spark)
    finally:
        spark.stop()

    expected, actual = read_records(local), read_records(tmp_path / "spark")
    assert summary.documents == 5 and summary.errors == 2 and summary.sentences == len(expected)
    assert read_errors(tmp_path / "spark") == read_errors(local)

    def exact(record):
        return {k: v for k, v in record.items() if k not in ("event_scores", "actors")} | {
            "actors": [{k: v for k, v in a.items() if k != "score"} for a in record["actors"]]
        }

    assert [exact(r) for r in actual] == [exact(r) for r in expected]
    for got, want in zip(actual, expected):
        # Batches differ between the engines, and so does padding: scores agree to float32 precision.
        assert got["event_scores"] == pytest.approx(want["event_scores"], abs=1e-5)
        assert [a["score"] for a in got["actors"]] == pytest.approx([a["score"] for a in want["actors"]], abs=1e-5)


@pytest.mark.slow
def test_the_spark_engine_runs_the_backend_its_inference_section_names(tiny_encoder_dir, tmp_path, monkeypatch):
    import mlflow.pyfunc
    from mlflow.models import Model

    from conflict_events.inference.spark import run_spark_job, spark_session

    model_dir = save_random_joint_model(tiny_encoder_dir, tmp_path / "joint", max_length=32)
    archive = tmp_path / "archive.jsonl"
    archive.write_text(json.dumps({"id": "a", "text": TEXTS[0]}) + "\n", encoding="utf-8")
    inference = InferenceConfig(backend="onnx", batch_size=3, window_overlap=5)

    staged = []
    spark_udf = mlflow.pyfunc.spark_udf

    def staging_spark_udf(session, model_uri, **kwargs):
        staged.append(Model.load(model_uri).flavors["python_function"]["config"])
        return spark_udf(session, model_uri, **kwargs)

    monkeypatch.setattr(mlflow.pyfunc, "spark_udf", staging_spark_udf)
    spark = spark_session("local[1]")
    # The onnx backend exports the model into this cache when a Python worker loads it: a file there is
    # the executor's doing (the driver never loads the model). UDFs built from now on carry the variable.
    cache = tmp_path / "cache"
    spark.sparkContext.environment["CONFLICT_EVENTS_CACHE"] = str(cache)
    try:
        summary = run_spark_job(str(model_dir), [str(archive)], tmp_path / "spark", inference=inference, spark=spark)
    finally:
        spark.stop()

    assert staged == [inference.model_dump(mode="json")]
    assert summary.sentences == 2
    assert list((cache / "onnx").glob("*.onnx")), "the executor did not run the onnx backend"


@pytest.mark.slow
def test_spark_stories_and_events_equal_the_local_engines(tiny_encoder_dir, tmp_path):
    from test_stories import COPY, UNRELATED, WIRE

    from conflict_events.inference.batch import read_events
    from conflict_events.inference.spark import run_spark_job, spark_session

    model_dir = save_random_joint_model(tiny_encoder_dir, tmp_path / "joint", max_length=32)
    archive = tmp_path / "archive"
    archive.mkdir()
    # The wire story and an unrelated article in one file; a copy with small edits, a second copy and an
    # update of the unrelated one in another.
    pq.write_table(pa.table({"id": ["wire", "talks"], "text": [WIRE, UNRELATED]}), archive / "a.parquet")
    (archive / "b.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in
                [("other", TEXTS[0]), ("copy", COPY), ("talks-again", UNRELATED + " Updated."), ("copy-2", COPY)]),
        encoding="utf-8",
    )
    inference = InferenceConfig(shard_size=2, backend="torch")
    local = tmp_path / "local"
    run_predict_job(PredictJob.create(str(model_dir), [str(archive)], inference), local, progress=False)

    spark = spark_session("local[2]")
    try:
        run_spark_job(str(model_dir), [str(archive)], tmp_path / "spark", inference=inference, spark=spark)
    finally:
        spark.stop()

    def stories(output):
        return [(r["doc_id"], r["sentence_index"], r["story_id"], r["duplicate_of"]) for r in read_records(output)]

    assert stories(tmp_path / "spark") == stories(local)
    assert {doc: (story, copy_of) for doc, _, story, copy_of in stories(local)} == {
        "wire": ("wire", None), "talks": ("talks", None), "other": ("other", None),
        "copy": ("wire", "wire"), "talks-again": ("talks", "talks"), "copy-2": ("wire", "wire"),
    }
    # The random model's actors and events are the same in both engines (the records are: the test above).
    assert read_events(tmp_path / "spark") == read_events(local) != []
    manifest = json.loads((tmp_path / "spark" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["events"]["rows"] == len(read_events(local))
