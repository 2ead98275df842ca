"""``conflict-events predict --engine spark``: the batch job through MLflow's ``spark_udf`` (``tracking.spark_udf``).

1. The driver reads the archive with the same readers as the local engine (so document ids, order and
   ``errors.jsonl`` are identical) and stages the good documents as Parquet (``position``, ``id``, ``text``).
2. Spark applies the pyfunc to every staged document (``layout="documents"``: one JSON list of sentence
   records per document, since a Spark UDF returns one value per input row), explodes the lists and
   writes the records, ordered by document position and sentence index, to ``records/``.
3. Stories (``conflict_events/stories.py``): Spark ML's ``MinHashLSH`` joins the staged documents' word
   shingles (computed on the driver by the local engine's function) to themselves; each copy's earliest
   similar document goes to the driver, which resolves the story ids by the local engine's rule
   (``stories.resolve_stories``), and they are joined onto the documents before the UDF. The events table
   is a ``groupBy`` of the records (cached, so the model runs once), written to ``events/``.

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
from conflict_events.config import InferenceConfig, StoriesConfig
from conflict_events.inference.batch import (
    ERRORS_FILE,
    EVENTS_FILE,
    MANIFEST,
    RECORDS_DIR,
    JobError,
    JobSummary,
    PredictJob,
)
from conflict_events.inference.predictor import ModelIdentity, model_fingerprint, pinned_uri
from conflict_events.model import JOINT_CONFIG_FILE
from conflict_events.records import EVENT_COLUMNS, RECORD_COLUMNS, spark_ddl
from conflict_events.sources import BadRecord, read_documents
from conflict_events.stories import SOURCE_ROLE, TARGET_ROLE, resolve_stories, shingles

# The pyfunc's "documents" layout answers each document with the JSON list of its records.
_RECORDS_DDL = f"array<{spark_ddl()}>"
_STORY_COLUMNS = ("story_id", "duplicate_of")
# MinHashLSH ORs its hash tables (one min-hash each): a pair of similarity 0.8 is a candidate in at least one
# of 8 with probability 1 - 0.2**8; candidates are then kept by their exact Jaccard distance.
_HASH_TABLES = 8
_HASH_FEATURES = 1 << 22  # HashingTF buckets for shingles: collisions change a similarity negligibly
_LSH_SEED = 17


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


def _stage_documents(job: PredictJob, staging: Path) -> tuple[list[str], list[BadRecord]]:
    """Good documents to ``staging`` as Parquet (``position``, ``id``, ``text``, ``shingles``), in input order;
    their ids and the bad records returned."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [("position", pa.int64()), ("id", pa.string()), ("text", pa.string()), ("shingles", pa.list_(pa.string()))]
    )
    errors: list[BadRecord] = []
    ids: list[str] = []
    stories = job.inference.stories
    rows: dict[str, list] = {"position": [], "id": [], "text": [], "shingles": []}
    with pq.ParquetWriter(staging, schema) as writer:
        for item in read_documents(job.inputs, job.reader_settings):
            if isinstance(item, BadRecord):
                errors.append(item)
                continue
            rows["position"].append(len(ids))
            rows["id"].append(item.id)
            rows["text"].append(item.text)
            rows["shingles"].append(shingles(item.text, stories.shingle) if stories.enabled else [])
            ids.append(item.id)
            if len(rows["id"]) >= 1000:
                writer.write_table(pa.Table.from_pydict(rows, schema=schema))
                rows = {key: [] for key in rows}
        writer.write_table(pa.Table.from_pydict(rows, schema=schema))
    return ids, errors


def _stage_stories(session, staging: Path, ids: list[str], settings: StoriesConfig, target: Path) -> None:
    """The story of every staged document to ``target`` as Parquet (``position``, ``story_id``, ``duplicate_of``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.ml.feature import HashingTF, MinHashLSH
    from pyspark.sql import functions as F

    documents = session.read.parquet(str(staging)).select("position", "shingles").filter(F.size("shingles") > 0)
    vectors = HashingTF(inputCol="shingles", outputCol="features", numFeatures=_HASH_FEATURES, binary=True).transform(
        documents
    )
    lsh = MinHashLSH(inputCol="features", outputCol="hashes", numHashTables=_HASH_TABLES, seed=_LSH_SEED).fit(vectors)
    hashed = lsh.transform(vectors).cache()
    # Spark keeps distances strictly below its threshold; similarity >= threshold is distance <= 1 - threshold.
    pairs = (
        lsh.approxSimilarityJoin(hashed, hashed, 1 - settings.threshold + 1e-9, distCol="distance")
        .select(F.col("datasetA.position").alias("earlier"), F.col("datasetB.position").alias("position"))
        .filter(F.col("earlier") < F.col("position"))
        .groupBy("position")
        .agg(F.min("earlier").alias("earlier"))
    )
    earliest = {row["position"]: row["earlier"] for row in pairs.collect()}
    hashed.unpersist()
    stories = resolve_stories(ids, earliest)
    table = pa.table(
        {
            "position": pa.array(range(len(ids)), pa.int64()),
            "story_id": [story.story_id for story in stories],
            "duplicate_of": pa.array([story.duplicate_of for story in stories], pa.string()),
        }
    )
    pq.write_table(table, target)


def _events(records):
    """The events table (``stories.EventTable``'s rows, in its order) of a frame of records with ``position``."""
    from pyspark.sql import functions as F

    def parties(role: str):
        pairs = F.array_distinct(
            F.transform(
                F.filter(F.coalesce("actors", F.array()), lambda actor: actor["role"] == role),
                lambda actor: F.struct(actor["country"].alias("country"), actor["sector"].alias("sector")),
            )
        )
        none = F.array(F.struct(F.lit(None).cast("string").alias("country"), F.lit(None).cast("string").alias("sector")))
        return F.when(F.size(pairs) > 0, pairs).otherwise(none)

    keys = [name for name in EVENT_COLUMNS if name not in ("sentence_ids", "count")]
    rows = (
        records.filter(F.col("event_code").isNotNull())
        .select("*", F.posexplode(parties(SOURCE_ROLE)).alias("source_index", "source"))
        .select("*", F.posexplode(parties(TARGET_ROLE)).alias("target_index", "target"))
        .select(
            "story_id", "event_code",
            F.col("source.country").alias("source_country"), F.col("source.sector").alias("source_sector"),
            F.col("target.country").alias("target_country"), F.col("target.sector").alias("target_sector"),
            "event_country",
            F.struct("position", "sentence_index", "source_index", "target_index",
                     F.concat_ws(":", "doc_id", F.col("sentence_index").cast("string")).alias("sentence_id")).alias("at"),
        )
        .groupBy(*keys)
        .agg(F.array_sort(F.collect_list("at")).alias("at"))
    )
    # In the order rows are first met: by their first sentence, then by source and target in that sentence.
    return rows.orderBy(F.col("at")[0]).select(
        *keys,
        F.transform("at", lambda at: at["sentence_id"]).alias("sentence_ids"),
        F.size("at").cast("long").alias("count"),
    ).select(*EVENT_COLUMNS)


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
    from pyspark import StorageLevel
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
        ids, errors = _stage_documents(job, staging)
        documents = len(ids)
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
        staged = session.read.parquet(str(staging)).select("position", "id", "text")
        if job.inference.stories.enabled and documents:
            _stage_stories(session, staging, ids, job.inference.stories, workdir / "stories.parquet")
            staged = staged.join(F.broadcast(session.read.parquet(str(workdir / "stories.parquet"))), "position", "left")
            story = list(_STORY_COLUMNS)  # the records' story fields come from the documents
        else:
            story = []
        frame = staged.repartitionByRange(partitions, "position").sortWithinPartitions("position")
        exploded = (
            frame.select("position", *story, F.from_json(predict(F.struct("id", "text")), _RECORDS_DDL).alias("records"))
            .select("position", *story, F.explode("records").alias("record"))
            .select("position", *(F.col(name if name in story else f"record.{name}").alias(name) for name in RECORD_COLUMNS))
        )
        # Cached: the events table reads the records again, and recomputing them would run the model twice.
        exploded = exploded.persist(StorageLevel.MEMORY_AND_DISK)
        records = exploded.select(*RECORD_COLUMNS)
        events = _events(exploded)
        target, events_target = str(output / RECORDS_DIR), str(output / EVENTS_FILE)
        if output_format == "parquet":
            records.write.parquet(target)
            events.write.parquet(events_target)
        else:
            records.write.option("ignoreNullFields", "false").json(target)
            events.write.option("ignoreNullFields", "false").json(events_target)
        sentences = records.count()
        event_rows = session.read.parquet(events_target).count() if output_format == "parquet" else _count_json(events_target)
        exploded.unpersist()
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
        "events": {"file": EVENTS_FILE, "rows": event_rows, "columns": list(EVENT_COLUMNS)},
        "totals": {"documents": documents, "sentences": sentences, "errors": len(errors)},
    }
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return summary


def _count_json(directory: str) -> int:
    return sum(sum(1 for _ in path.open("rb")) for path in Path(directory).glob("part-*"))
