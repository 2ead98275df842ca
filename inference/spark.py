"""``conflict-events predict --engine spark``: the batch job on Spark, the executors doing the work.

The driver only ever holds metadata (the file list, per-file counts, the counts of each stage); documents,
records and bad records stay on the executors. What runs where:

1. **Listing** (driver, through Spark's file index): each input (a file, a folder, searched recursively, or a
   Hadoop glob, on any Hadoop file system: plain paths, ``file://``, ``hdfs://``, ``s3a://``) is listed with the
   ``binaryFile`` source, without reading content. Files are taken in the local engine's order (inputs in the
   order given, each one's files by path) with its rules: an unsupported suffix or a second mention of a file
   is listed under ``skipped`` in the manifest, the job's own output is not read. Unlike the local engine,
   Spark's file index ignores names starting with ``_`` or ``.`` (its hidden files) and a glob is Hadoop's
   (no ``**``).
2. **Reading** (executors): ``binaryFile`` reads each file's bytes in a task, which parses them with the local
   engine's readers (``sources.read_file`` on a :class:`~conflict_events.sources.FileBytes`, from
   ``inference/spark_reader.py``, which imports no torch): the same validation, ids, line numbers and reasons. A file's bytes must fit one task's memory; Spark's
   ``binaryFile`` cannot read a file over 2 GiB, which is a file-level bad record (split such files: an
   archive is many files). The parsed rows are cached on the executors (memory, then disk).
3. **Bad records** are written by the executors to ``errors/`` (JSON lines, ``BadRecord.to_json()``: source,
   line, id, reason, in reading order; ``source`` is the file's URI). There is no ``errors.jsonl``: one file
   would be written by one task.
4. **Positions**: each file's document count goes to the driver, which turns them into offsets: a
   document's position is its index in the local engine's reading order.
5. **Stories** (``conflict_events/stories.py``; executors): the documents' shingles (the local engine's
   function, in a UDF), Spark ML's ``MinHashLSH`` self-join (8 hash tables, fixed seed, on ``HashingTF``
   vectors; pairs kept by their exact Jaccard distance), each copy's earliest similar document, and the story
   root by pointer jumping (a join per doubling of the chain length; the driver sees only whether a pointer
   moved): the local rule (``stories.resolve_stories``) without collecting anything.
6. **Prediction** (executors): documents range-partitioned by position (one partition per
   ``inference.shard_size`` documents, at least one per core), each partition in position order through
   ``mapInArrow`` with the local engine's :class:`~conflict_events.inference.predictor.Predictor` built from
   the job's ``inference`` section whole (backend, batch size, window overlap, resolution): records equal the
   local engine's. Each partition is one part file of ``records/``, so the part files in name order are the
   records in input order. The records are cached (the events table reads them again; recomputing them
   would run the model twice) and the events table (a ``groupBy``) goes to ``events/``.
7. **Commit** (driver): see below; ``manifest.json`` last.

The model: ``--model`` is resolved once on the driver (an alias ``models:/name@alias`` to the version it
names then, ``models:/name/3``; the manifest and every record name that version), downloaded there and, on a
cluster, shipped to the executors with ``SparkContext.addFile`` as a zip (unpacked once per executor); in
local mode the executors read the driver's directory. Executors never ask the registry. Each Python
worker loads the model once (cached per process; the manifest's ``prediction_workers`` counts them) and
gives torch ``spark.task.cpus`` threads. What the executors ran (``backends.resolve_backend`` on each) is
gathered with an accumulator: the manifest's ``backend``. Not ``mlflow.pyfunc.spark_udf``, as before: it
runs the pyfunc with the ``inference`` section the model was logged with (MLflow applies a ``model_config``
override only to the keys that section had), and a UDF answers one value per row, so records went through
JSON; the Predictor is what the local engine runs.

Output (``--output``, any Hadoop URI)::

    manifest.json       the commit marker: status, job, pinned model, backend that ran, files, counts
    records/            part-NNNNN-*.parquet (or .json, JSON lines): one per partition, in input order
    errors/             part-*.json: the bad records, JSON lines, in reading order
    events/             part-*: the events table, rows in order
    .attempt-<id>/      while a job runs: what the executors wrote, before the commit

Failure semantics. The executors write only under ``.attempt-<id>/`` (through Spark's output committer: a
task's files appear when the task commits, a dataset's when the job does, so retried tasks never duplicate
records). When all three are written the driver renames them to ``records/``, ``errors/`` and ``events/``
(Hadoop ``FileSystem.rename``: atomic on HDFS and local disks; a copy on S3, where the manifest alone is the
commit) and then writes ``manifest.json`` with ``status: complete``. An output is complete if and only if
its manifest says so: a job that fails removes what it wrote and leaves ``status: failed`` with the reason;
a killed driver leaves ``status: running`` and maybe ``.attempt-<id>/``. A rerun into the same URI refuses a
complete output and a running one (a job may be writing it; delete the output when none is), and replaces
a failed one (its leftovers are deleted first). There is no ``--resume``: Spark retries failed tasks, and
a failed job is rerun.

Test hook: ``CONFLICT_EVENTS_TEST_SPARK_FAIL`` (:data:`FAIL_ENV`) makes the job fail at a point:
``predict`` in the executors' environment (``SparkContext.environment``) fails every prediction task;
``commit:<n>`` in the driver's fails the commit after its first ``n`` renames.
"""

from __future__ import annotations

import functools
import glob
import json
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from conflict_events.backends import configure_threads
from conflict_events.config import InferenceConfig, StoriesConfig
from conflict_events.errors import DataError, Issue, Location
from conflict_events.inference.allocator import limit_onednn_primitive_cache, release_free_memory
from conflict_events.inference.batch import (
    ERRORS_DIR,
    EVENTS_FILE,
    MANIFEST,
    RECORDS_DIR,
    JobError,
    JobSummary,
    PredictJob,
)
from conflict_events.inference.predictor import ModelIdentity, PinnedModel, Predictor
from conflict_events.inference.spark_reader import PARSED_DDL, parse_files
from conflict_events.records import EVENT_COLUMNS, RECORD_COLUMNS, arrow_schema, spark_ddl
from conflict_events.schema import Document
from conflict_events.sources import SUFFIXES, FileBytes, ReaderSettings, SkippedFile, suffix_of
from conflict_events.stories import SOURCE_ROLE, TARGET_ROLE, shingles

FORMAT_VERSION = 2  # 2: executors read the inputs; errors/ dataset; backend; failure status
FAIL_ENV = "CONFLICT_EVENTS_TEST_SPARK_FAIL"
ATTEMPT_PREFIX = ".attempt-"
# Spark's binaryFile reads a file into one byte array, which Java caps at 2**31 - 1 bytes.
MAX_FILE_BYTES = 2**31 - 1
_PREDICTED_DDL = "struct<position:bigint," + spark_ddl()[len("struct<") :]
_STORY_COLUMNS = ("story_id", "duplicate_of")
# MinHashLSH ORs its hash tables (one min-hash each): a pair of similarity 0.8 is a candidate in at least one
# of 8 with probability 1 - 0.2**8; candidates are then kept by their exact Jaccard distance.
_HASH_TABLES = 8
_HASH_FEATURES = 1 << 22  # HashingTF buckets for shingles: collisions change a similarity negligibly
_LSH_SEED = 17
# Characters Hadoop's glob treats as syntax: escaped in the file paths handed back to Spark to read.
_GLOB_SYNTAX = re.compile(r"([\\*?\[\]{}])")


def spark_session(master: str | None = None, config: dict[str, str] | None = None, app_name: str = "conflict-events-predict"):
    """The active session, or a new one. ``master`` None: what ``spark-submit`` was given, else ``local[*]``
    (spark-submit's default). ``config``: Spark settings, e.g. ``spark.driver.memory`` (read when the JVM
    starts, so only for a session this call creates)."""
    from pyspark.sql import SparkSession

    # Executors must run the interpreter that has this project and its model code installed (local mode;
    # on a cluster, spark-submit's spark.pyspark.python or the nodes' PYSPARK_PYTHON decide).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name).config("spark.ui.enabled", "false")
    if master is not None:
        builder = builder.master(master)
    for key, value in (config or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


# --- the output's file system (driver) ---------------------------------------------------------
class _OutputFiles:
    """The output folder on its Hadoop file system, through the driver's JVM: the checks, the commit's
    renames and the manifest work on any Hadoop URI."""

    def __init__(self, session, uri: str):
        self._jvm = session._jvm
        path = self._jvm.org.apache.hadoop.fs.Path(uri)
        self.fs = path.getFileSystem(session._jsc.hadoopConfiguration())
        self.root = self.fs.makeQualified(path)
        # Small files the driver writes skip the local file system's .crc side files.
        self._writer = self.fs.getRaw() if self.fs.getScheme() == "file" else self.fs

    @property
    def uri(self) -> str:
        return self.root.toString()

    def child(self, name: str):
        return self._jvm.org.apache.hadoop.fs.Path(self.root, name)

    def child_uri(self, name: str) -> str:
        return self.child(name).toString()

    def names(self) -> list[str]:
        if not self.fs.exists(self.root):
            return []
        return [status.getPath().getName() for status in self.fs.listStatus(self.root)]

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self.child(name)))

    def delete(self, name: str) -> None:
        self.fs.delete(self.child(name), True)

    def rename(self, source: str, target: str) -> None:
        if self.exists(target):
            raise JobError(f"cannot commit {self.child_uri(source)}: {self.child_uri(target)} exists")
        if not self.fs.rename(self.child(source), self.child(target)):
            raise JobError(f"cannot commit: renaming {self.child_uri(source)} to {self.child_uri(target)} failed")

    def read_text(self, name: str) -> str | None:
        if not self.exists(name):
            return None
        stream = self.fs.open(self.child(name))
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)).decode("utf-8", "replace")
        finally:
            stream.close()

    def write_text(self, name: str, text: str) -> None:
        """Written whole under a temporary name, then renamed: a reader finds the old file, none, or the new one."""
        temporary = f"{ATTEMPT_PREFIX}{name}.{uuid.uuid4().hex[:8]}"
        stream = self._writer.create(self.child(temporary), True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()
        if self.exists(name):
            self.delete(name)
        self.rename(temporary, name)


def _read_manifest(files: _OutputFiles) -> dict[str, Any] | None:
    text = files.read_text(MANIFEST)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise JobError(f"{files.child_uri(MANIFEST)} is not a job manifest (not valid JSON: {error})") from None


def _prepare_output(files: _OutputFiles) -> None:
    """Refuse an output that holds a complete, running or foreign job; clear a failed Spark job's leftovers."""
    names = files.names()
    if not names:
        return
    manifest = _read_manifest(files)
    where = files.uri
    if manifest is None:
        raise JobError(f"output directory {where} is not empty; the Spark engine writes into a new or empty directory")
    if manifest.get("engine") != "spark":
        raise JobError(f"{where} already holds a prediction job of the local engine ({MANIFEST}); choose another output directory")
    status = manifest.get("status")
    if status == "complete":
        raise JobError(
            f"{where} already holds a complete Spark prediction job ({MANIFEST}); choose another output directory, "
            "or delete this one to predict again"
        )
    if status == "running":
        raise JobError(
            f"{where} holds a Spark prediction job that is running, or whose driver was killed ({MANIFEST}: status "
            "running); if no job is writing there, delete the directory and rerun"
        )
    # A failed job: what it wrote is not a result, and the rerun replaces it.
    for name in names:
        if name in (RECORDS_DIR, ERRORS_DIR, EVENTS_FILE, MANIFEST) or name.startswith(ATTEMPT_PREFIX):
            files.delete(name)
    left = files.names()
    if left:
        raise JobError(f"output directory {where} holds files of no Spark job ({', '.join(sorted(left))}); choose another one")


def _fail_at(point: str) -> None:
    """The test hook of the module docstring."""
    if os.environ.get(FAIL_ENV) == point:
        raise RuntimeError(f"{FAIL_ENV}={point}: the job fails here on purpose")


# --- listing (driver) --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Listing:
    files: tuple[tuple[str, int], ...]  # (URI, bytes) in reading order
    skipped: tuple[SkippedFile, ...]


def _is_glob(text: str) -> bool:
    return glob.has_magic(text) or "{" in text


def _path_key(uri: str) -> list[str]:
    # The local engine sorts a folder's files as paths (component by component), not as strings.
    return uri.split("/")


def _list_inputs(session, inputs: Sequence[str], output: _OutputFiles) -> _Listing:
    """The input files in the local engine's order (``sources.scan_inputs``'s rules), from Spark's file index."""
    jvm, conf = session._jvm, session._jsc.hadoopConfiguration()
    supported = ", ".join(SUFFIXES)
    issues: list[Issue] = []
    found: list[tuple[str, int]] = []
    skipped: list[SkippedFile] = []
    outside = output.uri.rstrip("/") + "/"
    for text in inputs:
        path = jvm.org.apache.hadoop.fs.Path(text)
        fs = path.getFileSystem(conf)
        pattern = _is_glob(text)
        if pattern:
            matches = fs.globStatus(path)
            if not matches:
                issues.append(Issue(Location(text), "the pattern matches no supported file"))
                continue
        elif not fs.exists(path):
            issues.append(Issue(Location(text), "no such file or directory"))
            continue
        elif fs.getFileStatus(path).isFile():
            if suffix_of(Path(text)) is None:
                issues.append(Issue(Location(text), f"unsupported file type (expected one of {supported})"))
                continue
        listed = (
            session.read.format("binaryFile").option("recursiveFileLookup", "true").load(text).select("path", "length").collect()
        )
        single_file = not pattern and fs.getFileStatus(path).isFile()
        files = []
        excluded = False
        for row in sorted(listed, key=lambda row: _path_key(row.path)):
            if row.path.startswith(outside):
                excluded = True
                continue
            if not single_file and suffix_of(FileBytes(row.path, b"")) is None:
                skipped.append(SkippedFile(row.path, f"unsupported file type (not {supported})"))
                continue
            files.append((row.path, int(row.length)))
        if excluded:
            skipped.append(SkippedFile(output.uri, "the job's own output directory (not read)"))
        if not files and not single_file:
            message = "the pattern matches no supported file" if pattern else f"no {supported} files in this directory"
            issues.append(Issue(Location(text), message))
        found += files
    if issues:
        raise DataError(issues)
    unique: list[tuple[str, int]] = []
    seen: set[str] = set()
    for uri, size in found:
        if uri in seen:
            skipped.append(SkippedFile(uri, f"the same file as {uri}, which is read once"))
            continue
        seen.add(uri)
        unique.append((uri, size))
    return _Listing(tuple(unique), tuple(skipped))


# --- reading (executors: inference/spark_reader.py) ----------------------------------------
def _parsed_items(session, listing: _Listing, settings: ReaderSettings):
    """Every input file's documents and bad records (``PARSED_DDL``), parsed on the executors."""
    from pyspark.sql import functions as F

    readable = [(uri, index) for index, (uri, size) in enumerate(listing.files) if size <= MAX_FILE_BYTES]
    too_large = [
        (index, 0, None, None, None, uri, None,
         f"the file has {size} bytes, over the {MAX_FILE_BYTES} a Spark task can read at once; split it into smaller files")
        for index, (uri, size) in enumerate(listing.files)
        if size > MAX_FILE_BYTES
    ]
    parsed = session.createDataFrame(too_large, PARSED_DDL)
    if readable:
        indexes = session.createDataFrame(readable, "path string, file_index bigint")
        # Paths handed back to Spark are globbed: a file named `a[1].jsonl` is read as itself.
        contents = (
            session.read.format("binaryFile")
            .load([_GLOB_SYNTAX.sub(r"\\\1", uri) for uri, _ in readable])
            .join(F.broadcast(indexes), "path")
            .select("file_index", "path", "content")
        )
        rows = contents.rdd.mapPartitions(functools.partial(parse_files, settings))
        parsed = parsed.unionByName(session.createDataFrame(rows, PARSED_DDL, verifySchema=False))
    return parsed


# --- stories (executors) -----------------------------------------------------------------------
def _story_columns(session, documents, settings: StoriesConfig):
    """``position``, ``story_id``, ``duplicate_of`` of every copy (a document with an earlier similar one):
    its story is its root's (follow each copy's earliest similar document to one that has none)."""
    from pyspark.ml.feature import HashingTF, MinHashLSH
    from pyspark.sql import functions as F

    shingled = documents.select(
        "position", F.udf(functools.partial(shingles, size=settings.shingle), "array<string>", useArrow=False)("text").alias("shingles")
    ).filter(F.size("shingles") > 0)
    vectors = HashingTF(inputCol="shingles", outputCol="features", numFeatures=_HASH_FEATURES, binary=True).transform(
        shingled
    )
    lsh = MinHashLSH(inputCol="features", outputCol="hashes", numHashTables=_HASH_TABLES, seed=_LSH_SEED).fit(vectors)
    hashed = lsh.transform(vectors).cache()
    # Spark keeps distances strictly below its threshold; similarity >= threshold is distance <= 1 - threshold.
    earliest = (
        lsh.approxSimilarityJoin(hashed, hashed, 1 - settings.threshold + 1e-9, distCol="distance")
        .select(F.col("datasetA.position").alias("earlier"), F.col("datasetB.position").alias("position"))
        .filter(F.col("earlier") < F.col("position"))
        .groupBy("position")
        .agg(F.min("earlier").alias("earlier"))
        .localCheckpoint()
    )
    hashed.unpersist()
    # Pointer jumping: each pass replaces a copy's pointer by its pointer's pointer, halving every chain.
    roots = earliest.select("position", F.col("earlier").alias("root"))
    while True:
        hop = roots.alias("a").join(roots.alias("b"), F.col("a.root") == F.col("b.position"), "left")
        if hop.filter(F.col("b.root").isNotNull()).isEmpty():
            break
        roots = hop.select(F.col("a.position"), F.coalesce("b.root", "a.root").alias("root")).localCheckpoint()
    ids = documents.select("position", "id")
    return (
        earliest.join(roots, "position")
        .join(ids.select(F.col("position").alias("earlier"), F.col("id").alias("duplicate_of")), "earlier")
        .join(ids.select(F.col("position").alias("root"), F.col("id").alias("story_id")), "root")
        .select("position", *_STORY_COLUMNS)
    )


# --- prediction (executors) --------------------------------------------------------------------
@dataclass(frozen=True)
class _ShippedModel:
    """How an executor finds the model: the driver's directory (local mode), or a zip shipped with
    ``SparkContext.addFile``, unpacked once next to it."""

    directory: str | None = None
    archive: str | None = None  # its file name, for SparkFiles.get

    def local_directory(self) -> Path:
        if self.directory is not None:
            return Path(self.directory)
        from pyspark import SparkFiles

        archive = Path(SparkFiles.get(self.archive))
        target = archive.parent / archive.name.removesuffix(".zip")
        if not target.is_dir():
            unpacking = Path(tempfile.mkdtemp(prefix=".unpack-", dir=archive.parent))
            shutil.unpack_archive(archive, unpacking, "zip")
            try:
                unpacking.rename(target)
            except OSError:  # another Python worker of this executor got there first
                shutil.rmtree(unpacking, ignore_errors=True)
        return target


def _ships_model(session) -> bool:
    """Whether executors need the model shipped (they do not share the driver's disk outside local mode)."""
    return not session.sparkContext.master.startswith("local")


def _ship_model(session, directory: Path, workdir: Path) -> _ShippedModel:
    if not _ships_model(session):
        return _ShippedModel(directory=str(Path(directory).resolve()))
    # A name of its own per job: SparkContext refuses a second file of the same name from another path.
    base = workdir / f"model-{uuid.uuid4().hex[:12]}"
    archive = shutil.make_archive(str(base), "zip", root_dir=directory)
    session.sparkContext.addFile(archive)
    return _ShippedModel(archive=Path(archive).name)


_WORKER_PREDICTOR: dict[tuple, Predictor] = {}


def _worker_predictor(model: _ShippedModel, inference: str, identity: tuple[str, str | None]) -> Predictor:
    """This Python worker's predictor, loaded once and kept for the next tasks of the same job."""
    from pyspark import TaskContext

    key = (model, inference, identity)
    if key not in _WORKER_PREDICTOR:
        _WORKER_PREDICTOR.clear()
        limit_onednn_primitive_cache()  # before the worker's first batch, as the CLI and the pyfunc do
        # A task's share of the executor's cores: spark.task.cpus (executors run several tasks at once).
        configure_threads(TaskContext.get().cpus() if TaskContext.get() is not None else None)
        settings = InferenceConfig.model_validate_json(inference)
        _WORKER_PREDICTOR[key] = Predictor.from_uri(model.local_directory(), settings, ModelIdentity(*identity))
    return _WORKER_PREDICTOR[key]


class _WorkersRan:
    """Accumulator parameter: what the prediction workers report, a set of ``(kind, value)``: ``("backend",
    BackendChoice.to_json() as JSON)`` and ``("worker", "host:pid")`` (each worker loads the model once)."""

    def zero(self, value):
        return frozenset()

    def addInPlace(self, first, second):
        return frozenset(first) | frozenset(second)


@dataclass(frozen=True)
class _PredictPartition:
    """``mapInArrow``'s function: documents (position, id, text, story columns) in, records (``position`` + the
    record columns) out, in the same order; ``inference.batch_size`` documents per model call, as locally."""

    model: _ShippedModel
    inference: str  # the job's section, JSON
    identity: tuple[str, str | None]
    backends: Any  # pyspark Accumulator of _WorkersRan

    def __call__(self, batches):
        import pyarrow as pa

        if os.environ.get(FAIL_ENV) == "predict":
            raise RuntimeError(f"{FAIL_ENV}=predict: the prediction task fails on purpose")
        predictor = _worker_predictor(self.model, self.inference, self.identity)
        choice = getattr(predictor, "backend", None)
        ran = choice.to_json() if hasattr(choice, "to_json") else {"requested": predictor.settings.backend}
        worker = f"{socket.gethostname()}:{os.getpid()}"
        self.backends.add(frozenset([("backend", json.dumps(ran, sort_keys=True)), ("worker", worker)]))
        schema = pa.schema([pa.field("position", pa.int64()), *arrow_schema()])
        size = predictor.settings.batch_size
        for batch in batches:
            columns = batch.to_pydict()
            documents = [Document(doc_id, text) for doc_id, text in zip(columns["id"], columns["text"])]
            for start in range(0, len(documents), size):
                grouped = predictor.predict_by_document(documents[start : start + size])
                rows = []
                for index, records in enumerate(grouped, start):
                    story = {name: columns[name][index] for name in _STORY_COLUMNS}
                    rows += [{**record.to_json(), **story, "position": columns["position"][index]} for record in records]
                if rows:
                    yield pa.RecordBatch.from_pylist(rows, schema=schema)
            release_free_memory()  # the worker's RSS stays flat over many partitions, as the local engine's


def _partitions(documents: int, parallelism: int, shard_size: int) -> int:
    """One partition (one records part file) per ``shard_size`` documents, at least one per core."""
    return max(1, min(documents, max(parallelism, math.ceil(documents / shard_size))))


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


def _write(frame, uri: str, output_format: str) -> None:
    if output_format == "parquet":
        frame.write.parquet(uri)
    else:
        frame.write.option("ignoreNullFields", "false").json(uri)


def _backend_json(reports: frozenset) -> dict[str, Any] | None:
    """The manifest's ``backend``: what every executor ran, or, where they differ, each one's."""
    ran = [json.loads(value) for kind, value in sorted(reports) if kind == "backend"]
    if not ran:
        return None
    if len(ran) == 1:
        return ran[0]
    return {
        "requested": ran[0].get("requested"),
        "ran": "+".join(sorted({str(choice.get("ran")) for choice in ran})),
        "reason": "the executors differ",
        "executors": ran,
    }


# --- the job -----------------------------------------------------------------------------------
def run_spark_job(
    model: str,
    inputs: Sequence[str],
    output: str | Path,
    *,
    inference: InferenceConfig | None = None,
    output_format: str = "parquet",
    text_field: str = "text",
    id_field: str | None = None,
    batch_size: int | None = None,
    master: str | None = None,
    spark=None,
) -> JobSummary:
    """Run the batch job on Spark (``spark``, else :func:`spark_session` with ``master``); the records equal
    the local engine's for the same inputs, model and inference section."""
    job = PredictJob.create(model, inputs, inference, output_format, text_field, id_field, batch_size)
    session = spark or spark_session(master)
    started = time.perf_counter()
    files = _OutputFiles(session, str(output))
    _prepare_output(files)
    listing = _list_inputs(session, job.inputs, files)
    # The alias is resolved once, here: every executor runs that one version, however the alias moves
    # while the job runs, and the records and the manifest name it. The driver downloads it; it never loads it.
    pinned = PinnedModel.resolve(job.model)
    attempt = f"{ATTEMPT_PREFIX}{uuid.uuid4().hex[:12]}"
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "status": "running",
        "engine": "spark",
        "job": job.to_json(),
        "model": pinned.to_json(),
        "model_uri": pinned.identity.uri,
        "model_version": pinned.identity.version,
        "inputs": [{"path": uri, "bytes": size} for uri, size in listing.files],
        "skipped": [file.to_json() for file in listing.skipped],
        "record_columns": list(RECORD_COLUMNS),
        "spark": {
            "version": session.version,
            "master": session.sparkContext.master,
            "application_id": session.sparkContext.applicationId,
            "default_parallelism": session.sparkContext.defaultParallelism,
        },
        "attempt": attempt,
    }
    files.write_text(MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    workdir = Path(tempfile.mkdtemp(prefix="conflict-events-spark-"))
    cached: list[Any] = []
    try:
        summary = _run(session, job, listing, pinned, files, attempt, workdir, manifest, cached)
    except BaseException as error:
        _clean_failed(files, attempt)
        manifest.update(status="failed", failure=f"{type(error).__name__}: {error}")
        try:
            files.write_text(MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        except Exception:  # noqa: BLE001 -- the job's own error is the one to report
            pass
        raise
    finally:
        for frame in cached:
            frame.unpersist()
        shutil.rmtree(workdir, ignore_errors=True)
    summary.seconds = time.perf_counter() - started
    return summary


def _clean_failed(files: _OutputFiles, attempt: str) -> None:
    """A failed job leaves no records: what it wrote, committed or not, goes."""
    for name in (attempt, RECORDS_DIR, ERRORS_DIR, EVENTS_FILE):
        try:
            files.delete(name)
        except Exception:  # noqa: BLE001 -- best effort; the manifest says the job failed either way
            pass


def _run(session, job: PredictJob, listing: _Listing, pinned: PinnedModel, files: _OutputFiles, attempt: str,
         workdir: Path, manifest: dict[str, Any], cached: list[Any]) -> JobSummary:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    started = time.perf_counter()
    context = session.sparkContext
    staged = {name: files.child_uri(f"{attempt}/{name}") for name in (RECORDS_DIR, ERRORS_DIR, EVENTS_FILE)}

    parsed = _parsed_items(session, listing, job.reader_settings).persist(StorageLevel.MEMORY_AND_DISK)
    cached.append(parsed)
    errors = parsed.filter(F.col("reason").isNotNull()).orderBy("file_index", "item")
    errors.select("source", "line", "id", "reason").write.option("ignoreNullFields", "false").json(staged[ERRORS_DIR])
    counts = {
        row.file_index: (row.documents, row.errors)
        for row in parsed.groupBy("file_index").agg(F.count("doc").alias("documents"), F.count("reason").alias("errors")).collect()
    }
    offsets, documents = [], 0
    for index in range(len(listing.files)):
        offsets.append((index, documents))
        documents += counts.get(index, (0, 0))[0]
    error_count = sum(count for _, count in counts.values())

    frame = (
        parsed.filter(F.col("doc").isNotNull())
        .join(F.broadcast(session.createDataFrame(offsets, "file_index bigint, offset bigint")), "file_index")
        .select((F.col("offset") + F.col("doc")).alias("position"), "id", "text")
    )
    if job.inference.stories.enabled and documents:
        stories = _story_columns(session, frame, job.inference.stories)
        frame = frame.join(stories, "position", "left").withColumn("story_id", F.coalesce("story_id", "id"))
    else:
        frame = frame.select("*", *(F.lit(None).cast("string").alias(name) for name in _STORY_COLUMNS))

    model = _ship_model(session, pinned.directory, workdir)
    backends = context.accumulator(frozenset(), _WorkersRan())
    predict = _PredictPartition(model, job.inference.model_dump_json(), (pinned.identity.uri, pinned.identity.version), backends)
    partitions = _partitions(documents, context.defaultParallelism, job.inference.shard_size)
    # Order is fixed *before* the model: sorting its output would make Spark sample it, i.e. run the model
    # twice. Range partitions in position order, sorted within = input order, part file by part file.
    predicted = (
        frame.repartitionByRange(partitions, "position")
        .sortWithinPartitions("position")
        .mapInArrow(predict, _PREDICTED_DDL)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    cached.append(predicted)
    _write(predicted.select(*RECORD_COLUMNS), staged[RECORDS_DIR], job.output_format)
    parsed.unpersist()  # the records are cached now: the documents are not read again
    sentences = predicted.count()
    _write(_events(predicted), staged[EVENTS_FILE], job.output_format)
    reader = session.read.parquet if job.output_format == "parquet" else session.read.text
    event_rows = reader(staged[EVENTS_FILE]).count()

    for done, name in enumerate((ERRORS_DIR, EVENTS_FILE, RECORDS_DIR)):
        _fail_at(f"commit:{done}")
        files.rename(f"{attempt}/{name}", name)
    files.delete(attempt)
    seconds = time.perf_counter() - started
    manifest.pop("attempt")
    manifest.update(
        status="complete",
        backend=_backend_json(backends.value),
        prediction_workers=sum(1 for kind, _ in backends.value if kind == "worker"),
        records={"dir": RECORDS_DIR, "format": job.output_format, "partitions": partitions},
        errors={"dir": ERRORS_DIR, "rows": error_count},
        events={"file": EVENTS_FILE, "rows": event_rows, "columns": list(EVENT_COLUMNS)},
        totals={"documents": documents, "sentences": sentences, "errors": error_count},
        seconds=round(seconds, 3),
    )
    # Last: the manifest saying `complete` is the commit.
    files.write_text(MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return JobSummary(
        documents=documents,
        sentences=sentences,
        errors=error_count,
        shards=partitions,
        documents_predicted=documents,
        model_uri=pinned.identity.uri,
        model_version=pinned.identity.version,
        model_requested=pinned.requested,
        files=len(listing.files),
        files_skipped=len(listing.skipped),
        backend=_backend_summary(manifest["backend"]),
    )


def _backend_summary(backend: dict[str, Any] | None) -> str | None:
    """The summary's ``backend`` line, as ``BackendChoice.summary()`` words it for the local engine."""
    if not backend:
        return None
    requested = "" if backend.get("requested") in (None, backend.get("ran")) else f" (requested {backend['requested']})"
    return f"{backend.get('ran')}{requested}: {backend.get('reason')}"
