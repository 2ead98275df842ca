"""``conflict-events predict --engine spark``: the batch job through MLflow's ``spark_udf`` (``tracking.spark_udf``).

1. The driver reads the archive with the same readers as the local engine (so document ids, order and
   ``errors.jsonl`` are identical) and stages the good documents as Parquet (``position``, ``id``, ``text``).
2. Spark applies the pyfunc to every staged document (``layout="documents"``: one JSON list of sentence
   records per document, since a Spark UDF returns one value per input row), explodes the lists and
   writes the records, ordered by document position and sentence index, to ``records/``.

``spark_udf`` needs an MLflow model: a ``models:/``/``runs:/`` URI or a pyfunc directory is used as is (and
runs with the ``inference`` section it was logged with); a joint-model directory is first saved as a pyfunc
model carrying the job's ``inference`` section in a temporary directory (visible to executors in local
mode; on a cluster, pass a registry URI). The Spark engine has no ``--resume``: Spark retries
failed tasks itself, and a failed job is rerun from scratch into a new directory.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from conflict_events import tracking
from conflict_events.config import InferenceConfig
from conflict_events.inference.batch import (
    ERRORS_FILE,
    MANIFEST,
    RECORDS_DIR,
    JobError,
    JobSummary,
    PredictJob,
)
from conflict_events.inference.predictor import ModelIdentity, model_fingerprint, pinned_uri
from conflict_events.model import JOINT_CONFIG_FILE
from conflict_events.records import RECORD_COLUMNS, spark_ddl
from conflict_events.sources import BadRecord, read_documents

# The pyfunc's "documents" layout answers each document with the JSON list of its records.
_RECORDS_DDL = f"array<{spark_ddl()}>"


def spark_session(master: str = "local[*]", app_name: str = "conflict-events-predict"):
    from pyspark.sql import SparkSession

    # Executors must run the interpreter that has this project and its model code installed.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )


def _stage_documents(job: PredictJob, staging: Path) -> tuple[int, list[BadRecord]]:
    """Good documents to ``staging`` as Parquet, in input order; bad records returned."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("position", pa.int64()), ("id", pa.string()), ("text", pa.string())])
    errors: list[BadRecord] = []
    count = 0
    rows: dict[str, list] = {"position": [], "id": [], "text": []}
    with pq.ParquetWriter(staging, schema) as writer:
        for item in read_documents(job.inputs, job.reader_settings):
            if isinstance(item, BadRecord):
                errors.append(item)
                continue
            rows["position"].append(count)
            rows["id"].append(item.id)
            rows["text"].append(item.text)
            count += 1
            if len(rows["id"]) >= 1000:
                writer.write_table(pa.Table.from_pydict(rows, schema=schema))
                rows = {key: [] for key in rows}
        writer.write_table(pa.Table.from_pydict(rows, schema=schema))
    return count, errors


def _pyfunc_uri(model: str, workdir: Path, inference: InferenceConfig) -> str:
    """The MLflow model ``spark_udf`` loads. A joint-model directory is staged as a pyfunc carrying the
    job's inference section whole; an MLflow model runs with the section it was logged with."""
    path = Path(model)
    if (path / JOINT_CONFIG_FILE).is_file():
        return str(tracking.save_joint_model_pyfunc(path, workdir / "pyfunc", inference))
    return model


def run_spark_job(
    model: str,
    inputs: Sequence[str],
    output: str | Path,
    *,
    inference: InferenceConfig | None = None,
    output_format: str = "parquet",
    text_field: str = "text",
    id_field: str = "id",
    batch_size: int | None = None,
    master: str = "local[*]",
    spark=None,
) -> JobSummary:
    """Run the batch job on Spark; the records equal the local engine's for the same inputs and model."""
    from pyspark.sql import functions as F

    job = PredictJob.create(model, inputs, inference, output_format, text_field, id_field, batch_size)
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise JobError(f"output directory {output} is not empty; the Spark engine writes into a new directory")
    output.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix=".spark-", dir=output))
    try:
        staging = workdir / "documents.parquet"
        documents, errors = _stage_documents(job, staging)
        # The alias is resolved once, here on the driver: every executor then loads that one version,
        # however the alias moves while the job runs, and the records and manifest name it.
        version = tracking.registry_version(str(model))
        pinned = pinned_uri(str(model), version)
        identity = ModelIdentity(pinned, version or model_fingerprint(pinned))
        session = spark or spark_session(master)
        predict = tracking.spark_udf(
            session,
            _pyfunc_uri(pinned, workdir, job.inference),
            params={"layout": "documents", "model_uri": identity.uri, "model_version": identity.version or ""},
        )
        # Order is fixed *before* the UDF: sorting its output would make Spark sample it, i.e. run the
        # model twice. Range partitions in position order + explode (which keeps order) = input order.
        partitions = max(1, min(documents, session.sparkContext.defaultParallelism * 2))
        frame = (
            session.read.parquet(str(staging))
            .repartitionByRange(partitions, "position")
            .sortWithinPartitions("position")
        )
        records = (
            frame.select(F.from_json(predict(F.struct("id", "text")), _RECORDS_DDL).alias("records"))
            .select(F.explode("records").alias("record"))
            .select(*(F.col(f"record.{name}").alias(name) for name in RECORD_COLUMNS))
        )
        target = str(output / RECORDS_DIR)
        if output_format == "parquet":
            records.write.parquet(target)
        else:
            records.write.option("ignoreNullFields", "false").json(target)
        sentences = session.read.parquet(target).count() if output_format == "parquet" else session.read.json(target).count()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    with (output / ERRORS_FILE).open("w", encoding="utf-8") as handle:
        for error in errors:
            handle.write(json.dumps(error.to_json(), ensure_ascii=False) + "\n")
    summary = JobSummary(
        documents=documents,
        sentences=sentences,
        errors=len(errors),
        shards=1,
        documents_predicted=documents,
        seconds=time.perf_counter() - started,
        model_uri=identity.uri,
        model_version=identity.version,
    )
    manifest = {
        "format_version": 1,
        "status": "complete",
        "engine": "spark",
        "job": job.to_json(),
        "model_uri": identity.uri,
        "model_version": identity.version,
        "record_columns": list(RECORD_COLUMNS),
        "totals": {"documents": documents, "sentences": sentences, "errors": len(errors)},
    }
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return summary
