"""The batch job behind ``conflict-events predict``: document archives in, sentence records out in shards.

Output directory::

    job.lock                      pid and host of the job writing here (inference/lock.py); gone when it ends
    manifest.json                 status, settings, the pinned model, the backend that ran, the input files,
                                  per-shard counts, totals
    records/part-00000.parquet    records of the first shard's documents, in input order (or .jsonl)
    errors/part-00000.jsonl       bad records met while reading those documents
    errors.jsonl                  all of errors/ concatenated, written when the job completes
    events.parquet                the events table, built from every shard's records when the job completes (or .jsonl)

What the job reads is fixed when it starts and recorded in the manifest: the input files in reading order
(path, size, sha256) and the model (an alias resolved to the version it names then, and the weights
fingerprint: :class:`~conflict_events.inference.predictor.PinnedModel`). The manifest's ``backend`` is
``{requested, ran, reason}`` (:class:`~conflict_events.backends.BackendChoice`): ``inference.backend`` names
what was asked for (``auto`` by default), ``ran`` what this machine ran; each shard names the backend that
wrote it (a job resumed on another machine may have shards of two). A shard is the next ``shard_size``
good documents of those files; a bad record belongs to the shard being filled when it is read. Files
added by ``--resume --allow-new-inputs`` form a new *segment*: its shards follow the committed ones and
never share a shard with an earlier segment's documents.

Each file is written under a temporary name and renamed when complete, errors file first: a records file
under its final name is the commit of its shard. ``--resume`` refuses (naming what changed) unless the
settings, the input files and the model are the ones recorded; it then re-reads the inputs, skips every
committed shard without running the model and redoes the rest, so after any crash (``kill -9`` included)
the output ends up exactly as an uninterrupted run's: nothing lost, nothing duplicated, nothing mixed.
Story ids (``conflict_events/stories.py``) are assigned to every document read, committed shards' too, so the
rebuilt index is the uninterrupted run's; the events table is written from all the shards at the end.

The input side (reading, shards, story ids, sentence splitting) runs ahead of the model in a producer
process, or in this process in turn with the model (``inference.producer``, ``inference/producer.py``):
either way one generator produces the same shards and splits, so the records are the same. What this run
spent in each stage (:data:`STAGES`: ``scan``, ``load``, ``read``, ``split``, ``stories``, ``tokenise``,
``model``, ``decode``, ``write``, ``wait`` for the producer, ``other``) is in the summary and in the
manifest's ``last_run``; the stages the producer ran beside the model are named there. The progress bar counts input
records (documents and bad records) against the total :func:`~conflict_events.sources.count_records` gives
where counting is cheap, with sentences/s and, given a total, an ETA.

Test hook: with ``CONFLICT_EVENTS_TEST_PAUSE=<point>`` the job stops at that point, creates the file named
by ``CONFLICT_EVENTS_TEST_PAUSE_MARKER`` and sleeps until it is killed (``tests/test_inference_batch.py``
kills it there with SIGKILL). Points: ``started`` (manifest written, nothing predicted),
``before-commit:<i>`` (shard ``i`` predicted, nothing of it written), ``mid-commit:<i>`` (its errors file
committed, its records file written under the temporary name but not renamed), ``after-commit:<i>``
(records committed, the manifest not yet updated) and ``before-complete`` (every shard committed,
``errors.jsonl`` and the final manifest not written).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from conflict_events.config import InferenceConfig
from conflict_events.errors import ConflictEventsError
from conflict_events.inference.allocator import release_free_memory
from conflict_events.inference.lock import LOCK_FILE, OutputLock
from conflict_events.inference.predictor import PinnedModel, Predictor
from conflict_events.inference.producer import (
    InProcessStream,
    PreparedShard,
    ProducerDone,
    ProducerError,
    ProducerProcess,
    ShardPlan,
    StreamItem,
    prepared_stream,
    producer_mode,
    shard_stories,
    split_chunks,
)
from conflict_events.records import (
    EVENT_COLUMNS,
    RECORD_COLUMNS,
    EventRow,
    SentenceRecord,
    arrow_table,
    events_arrow_schema,
)
from conflict_events.sentences import SentenceSplitter
from conflict_events.sources import BadRecord, InputFile, ReaderSettings, SkippedFile, count_records, scan_inputs
from conflict_events.stories import EventTable, StoryAssignment
from conflict_events.timing import StageTimes

MANIFEST = "manifest.json"
RECORDS_DIR = "records"
ERRORS_DIR = "errors"
ERRORS_FILE = "errors.jsonl"
EVENTS_FILE = "events"  # + the output format's suffix
# What the events table reads of each record.
_EVENT_INPUT_COLUMNS = ["doc_id", "sentence_index", "event_code", "actors", "event_country", "story_id"]
FORMATS = ("parquet", "jsonl")
# 2: the manifest records the input files, the pinned model and the status of a failed job.
FORMAT_VERSION = 2
_TMP_MARK = ".tmp-"
PAUSE_ENV = "CONFLICT_EVENTS_TEST_PAUSE"
PAUSE_MARKER_ENV = "CONFLICT_EVENTS_TEST_PAUSE_MARKER"
PAUSE_EXIT_CODE = 75
# `--model` and `--input` as given are not compared on resume: the pinned model and the files they
# resolve to are (a folder named twice, `./in` and `in`, is the same input).
_COMPARED_BY_IDENTITY = ("model", "inputs")
# Settings recorded but not compared on resume: they change how fast the records come, not what they are.
_NOT_COMPARED = ("producer",)
# The stages of the time breakdown, in pipeline order (docs/INFERENCE.md, "Producer, progress and where the time goes").
STAGES = ("scan", "load", "read", "split", "stories", "tokenise", "model", "decode", "write", "wait", "other")


class JobError(ConflictEventsError):
    """The batch job cannot start or resume (the output directory is not what the job expects)."""


@dataclass(frozen=True)
class PredictJob:
    """Everything that decides a job's output; ``--resume`` refuses to mix two different jobs."""

    model: str
    inputs: tuple[str, ...]
    # The config's inference section, whole (with --batch-size applied): the predictor gets it as is.
    inference: InferenceConfig
    output_format: str = "parquet"
    text_field: str = "text"
    # None: the `id` field where a record has one (conflict_events/sources.py); a name must be present.
    id_field: str | None = None

    @classmethod
    def create(
        cls,
        model: str,
        inputs: Sequence[str],
        inference: InferenceConfig | None = None,
        output_format: str = "parquet",
        text_field: str = "text",
        id_field: str | None = None,
        batch_size: int | None = None,
    ) -> "PredictJob":
        inference = inference or InferenceConfig()
        if output_format not in FORMATS:
            raise JobError(f"--format must be one of {', '.join(FORMATS)}; got '{output_format}'")
        if batch_size is not None:
            inference = inference.model_copy(update={"batch_size": batch_size})
        return cls(
            model=str(model),
            inputs=tuple(str(path) for path in inputs),
            inference=inference,
            output_format=output_format,
            text_field=text_field,
            id_field=id_field,
        )

    @property
    def reader_settings(self) -> ReaderSettings:
        return ReaderSettings(self.text_field, self.id_field, self.inference.max_document_chars)

    def to_json(self) -> dict[str, Any]:
        # Flat, with the inference fields beside the others: the shape manifests have always had.
        return {
            "model": self.model,
            "inputs": list(self.inputs),
            "output_format": self.output_format,
            "text_field": self.text_field,
            "id_field": self.id_field,
            **self.inference.model_dump(mode="json"),
        }

    def settings_json(self) -> dict[str, Any]:
        """What must be equal for a resume, besides the input files and the pinned model."""
        return _compared(self.to_json())


def _compared(job: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in job.items() if key not in _COMPARED_BY_IDENTITY + _NOT_COMPARED}


@dataclass
class JobSummary:
    documents: int = 0
    sentences: int = 0
    errors: int = 0
    shards: int = 0
    shards_skipped: int = 0
    documents_predicted: int = 0  # this run only (resumed shards excluded)
    seconds: float = 0.0
    model_uri: str = ""
    model_version: str | None = None
    model_requested: str = ""  # --model as given, when the job pinned it to another URI
    files: int = 0  # input files read
    files_skipped: int = 0  # met in input directories/globs and not read (manifest "skipped")
    files_added: int = 0  # appended by --allow-new-inputs in this run
    stale_lock: str | None = None  # the holder of a stale lock this run took over
    backend: str | None = None  # BackendChoice.summary() of the backend this run ran
    sentences_predicted: int = 0  # this run only
    producer: str | None = None  # where the input side ran: "process" or "none"
    # Seconds of this run per stage (STAGES); those in `stages_in_producer` ran beside the model, the others
    # add up to `seconds`.
    seconds_by_stage: dict[str, float] = field(default_factory=dict)
    stages_in_producer: tuple[str, ...] = ()

    @property
    def documents_per_second(self) -> float:
        return self.documents_predicted / self.seconds if self.seconds > 0 else 0.0

    @property
    def sentences_per_second(self) -> float:
        return self.sentences_predicted / self.seconds if self.seconds > 0 else 0.0

    def timing_json(self) -> dict[str, Any]:
        """This run's timing, as the manifest's ``last_run`` holds it."""
        return {
            "seconds": self.seconds,
            "documents_predicted": self.documents_predicted,
            "sentences_predicted": self.sentences_predicted,
            "producer": self.producer,
            "seconds_by_stage": self.seconds_by_stage,
            "stages_in_producer": list(self.stages_in_producer),
        }

    def lines(self) -> list[str]:
        skipped = f" ({self.shards_skipped} already done, skipped)" if self.shards_skipped else ""
        lines = []
        if self.model_uri:
            pinned = f", pinned from {self.model_requested}" if self.model_requested not in ("", self.model_uri) else ""
            lines.append(f"model:     {self.model_uri} (version {self.model_version}{pinned})")
        if self.backend:
            lines.append(f"backend:   {self.backend}")
        lines += [
            f"documents: {self.documents}",
            f"sentences: {self.sentences}",
            f"errors:    {self.errors}",
        ]
        if self.files:
            added = f", {self.files_added} added in this run as new shards" if self.files_added else ""
            lines.append(
                f"files:     {self.files} read{added}, {self.files_skipped} not read"
                + (" (listed under 'skipped' in manifest.json)" if self.files_skipped else "")
            )
        lines += [
            f"shards:    {self.shards}{skipped}",
            f"time:      {self.seconds:.1f}s, {self.documents_per_second:.1f} docs/s, "
            f"{self.sentences_per_second:.1f} sentences/s ({self.documents_predicted} documents predicted in this run)",
        ]
        if self.seconds_by_stage:
            stages = ", ".join(
                f"{name} {seconds:.1f}s" + ("*" if name in self.stages_in_producer else "")
                for name, seconds in self.seconds_by_stage.items()
            )
            beside = " (* in the producer process, beside the model)" if self.stages_in_producer else ""
            lines.append(f"stages:    {stages}{beside}")
        if self.stale_lock:
            lines.append(f"lock:      took over the stale lock of {self.stale_lock}")
        return lines


class ShardStore:
    """The output directory: committed shards, atomic writes, the manifest."""

    def __init__(self, root: Path, output_format: str):
        self.root = Path(root)
        self.output_format = output_format
        self.records_dir = self.root / RECORDS_DIR
        self.errors_dir = self.root / ERRORS_DIR

    def records_path(self, index: int) -> Path:
        return self.records_dir / f"part-{index:05d}.{self.output_format}"

    def errors_path(self, index: int) -> Path:
        return self.errors_dir / f"part-{index:05d}.jsonl"

    def is_committed(self, index: int) -> bool:
        return self.records_path(index).is_file()

    def committed_indices(self) -> frozenset[int]:
        """The shards whose records file is under its final name."""
        name = re.compile(rf"part-(\d+)\.{re.escape(self.output_format)}")
        found = (name.fullmatch(path.name) for path in self.records_dir.glob("part-*"))
        return frozenset(int(match.group(1)) for match in found if match)

    def is_empty(self) -> bool:
        """Nothing in the directory but the lock (this job's own)."""
        return not self.root.exists() or all(entry.name.lstrip(".").startswith(LOCK_FILE) for entry in self.root.iterdir())

    def prepare(self) -> None:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self.errors_dir.mkdir(parents=True, exist_ok=True)
        # Leftovers of a write that was killed before its rename.
        for directory in (self.root, self.records_dir, self.errors_dir):
            for leftover in directory.glob(f"*{_TMP_MARK}*"):
                leftover.unlink()

    def commit(
        self,
        index: int,
        records: list[SentenceRecord],
        errors: list[BadRecord],
        before_rename: Callable[[], None] | None = None,
    ) -> None:
        """Write the shard's errors, then its records; ``before_rename`` runs when the records file is
        written but not yet under its final name (the test hook's ``mid-commit`` point)."""
        _write_atomic(self.errors_path(index), lambda path: _write_jsonl(path, [e.to_json() for e in errors]))
        if self.output_format == "parquet":
            _write_atomic(self.records_path(index), lambda path: _write_parquet(path, records), before_rename)
        else:
            rows = [r.to_json() for r in records]
            _write_atomic(self.records_path(index), lambda path: _write_jsonl(path, rows), before_rename)

    def committed_counts(self, index: int) -> tuple[int, int]:
        """(sentences, errors) of a committed shard, read back from its files."""
        path = self.records_path(index)
        if self.output_format == "parquet":
            import pyarrow.parquet as pq

            sentences = pq.ParquetFile(path).metadata.num_rows
        else:
            sentences = _count_lines(path)
        errors_path = self.errors_path(index)
        return sentences, _count_lines(errors_path) if errors_path.is_file() else 0

    @property
    def events_path(self) -> Path:
        return self.root / f"{EVENTS_FILE}.{self.output_format}"

    def write_events_file(self, shard_count: int) -> int:
        """The events table from every committed shard's records (so a resumed job's equals an uninterrupted
        one's); returns its row count."""
        table = EventTable()
        for index in range(shard_count):
            for record in self._event_inputs(self.records_path(index)):
                table.add(record)
        rows = table.rows()
        if self.output_format == "parquet":
            _write_atomic(self.events_path, lambda path: _write_events_parquet(path, rows))
        else:
            _write_atomic(self.events_path, lambda path: _write_jsonl(path, [row.to_json() for row in rows]))
        return len(rows)

    def _event_inputs(self, path: Path) -> Iterator[dict[str, Any]]:
        if not path.is_file():  # a shard of bad records only
            return
        if self.output_format == "parquet":
            import pyarrow.parquet as pq

            yield from pq.read_table(path, columns=_EVENT_INPUT_COLUMNS).to_pylist()
        else:
            with path.open(encoding="utf-8") as handle:
                yield from (json.loads(line) for line in handle)

    def write_errors_file(self, shard_count: int) -> None:
        def write(path: Path) -> None:
            with path.open("wb") as out:
                for index in range(shard_count):
                    part = self.errors_path(index)
                    if part.is_file():
                        out.write(part.read_bytes())

        _write_atomic(self.root / ERRORS_FILE, write)

    def read_manifest(self) -> dict[str, Any] | None:
        path = self.root / MANIFEST
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_bytes().decode("utf-8", errors="surrogateescape"))
        except ValueError as error:
            raise JobError(f"{path} is not a job manifest (not valid JSON: {error})") from None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
        try:
            # A file name that is not UTF-8 is kept as its bytes, so that it compares equal on resume.
            data = text.encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError:  # some other lone surrogate (in a failure message, say): \u escapes
            data = (json.dumps(manifest, indent=2) + "\n").encode("ascii")
        _write_atomic(self.root / MANIFEST, lambda path: path.write_bytes(data))


def _write_atomic(final: Path, write: Callable[[Path], None], before_rename: Callable[[], None] | None = None) -> None:
    temporary = final.with_name(f"{final.name}{_TMP_MARK}{os.getpid()}")
    write(temporary)
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    if before_rename is not None:
        before_rename()
    os.replace(temporary, final)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_parquet(path: Path, records: list[SentenceRecord]) -> None:
    import pyarrow.parquet as pq

    pq.write_table(arrow_table(records), path)


def _write_events_parquet(path: Path, rows: list[EventRow]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([row.to_json() for row in rows], schema=events_arrow_schema()), path)


def read_events(output: str | Path) -> list[dict[str, Any]]:
    """The events table of a finished job's output (either engine), rows in order, as plain dicts."""
    root = Path(output)
    # The local engine writes one file, the Spark engine a folder of part files (in row order).
    paths = [root / f"{EVENTS_FILE}.parquet", root / f"{EVENTS_FILE}.jsonl"]
    paths = [path for path in paths if path.is_file()] or sorted((root / EVENTS_FILE).glob("part-*"))
    rows: list[dict[str, Any]] = []
    for path in paths:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows += pq.read_table(path).to_pylist()
        else:
            with path.open(encoding="utf-8") as handle:
                rows += [json.loads(line) for line in handle]
    return rows


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def read_records(output: str | Path) -> list[dict[str, Any]]:
    """Every record of a finished job's output, in order, as plain dicts (the JSONL shape)."""
    store_root = Path(output)
    paths = sorted((store_root / RECORDS_DIR).glob("part-*"))
    records: list[dict[str, Any]] = []
    for path in paths:
        if _TMP_MARK in path.name:
            continue
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            # Through the record type, which turns Parquet's key/value pairs back into JSON maps.
            records += [SentenceRecord.from_json(row).to_json() for row in pq.read_table(path).to_pylist()]
        else:
            with path.open(encoding="utf-8") as handle:
                records += [json.loads(line) for line in handle]
    return records


def read_errors(output: str | Path) -> list[dict[str, Any]]:
    """Every bad record of a finished job's output, in reading order: ``errors.jsonl``, or the Spark engine's
    ``errors/`` dataset (JSON-lines part files, in order)."""
    root = Path(output)
    paths = [root / ERRORS_FILE] if (root / ERRORS_FILE).is_file() else sorted((root / ERRORS_DIR).glob("part-*"))
    errors: list[dict[str, Any]] = []
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            errors += [json.loads(line) for line in handle]
    return errors


def run_predict_job(
    job: PredictJob,
    output: str | Path,
    *,
    resume: bool = False,
    allow_new_inputs: bool = False,
    progress: bool = True,
    predictor: Predictor | None = None,
) -> JobSummary:
    """Run (or finish, with ``resume``) a batch prediction job; returns its totals.

    ``allow_new_inputs`` (with ``resume``) predicts input files the job did not have as new shards after
    the committed ones. ``predictor`` replaces loading ``job.model`` (tests); its identity is the pin."""
    if allow_new_inputs and not resume:
        raise JobError("--allow-new-inputs adds input files to an existing job: it needs --resume")
    store = ShardStore(Path(output), job.output_format)
    scan = scan_inputs(job.inputs, exclude=store.root)
    with OutputLock(store.root) as lock:
        started = time.perf_counter()  # the time reported includes loading the model, as it always has
        timings = StageTimes()
        manifest = store.read_manifest()
        if manifest is not None and not resume:
            raise JobError(
                f"{output} already holds a prediction job ({MANIFEST}); pass --resume to finish it "
                "or choose another output directory"
            )
        if manifest is None and not store.is_empty():
            raise JobError(f"output directory {output} is not empty; choose an empty or new directory")
        if manifest is not None:
            _check_settings(manifest, job, output)
        with timings.stage("scan"):
            current = [InputFile.of(path) for path in scan.files]
        segments = [current] if manifest is None else _resumed_segments(manifest, current, allow_new_inputs, output)
        pinned = PinnedModel(job.model, predictor.identity, None) if predictor else PinnedModel.resolve(job.model)
        if manifest is not None:
            _check_model(manifest["model"], pinned, output)
        # The splitter the predictor uses, given to the input side; an injected predictor without one
        # (a test double) splits itself.
        splitter = getattr(predictor, "splitter", None) if predictor is not None else SentenceSplitter()
        plan = ShardPlan(
            segments=tuple(tuple(file.path for file in files) for files in segments),
            reader=job.reader_settings,
            shard_size=job.inference.shard_size,
            batch_size=job.inference.batch_size,
            stories=job.inference.stories if job.inference.stories.enabled else None,
            committed=store.committed_indices(),
            splitter=splitter,
        )
        with timings.stage("scan"):
            total = count_records([Path(file.path) for files in segments for file in files])
        # Started before the model loads, so the first documents are read and split meanwhile.
        with prepared_stream(plan, producer_mode(job.inference.producer, total, job.inference.batch_size)) as stream:
            if predictor is None:
                with timings.stage("load"):
                    predictor = Predictor.from_uri(pinned.directory, job.inference, pinned.identity, splitter)
            recorded = 0 if manifest is None else len(manifest["inputs"])
            summary = JobSummary(
                model_uri=pinned.identity.uri,
                model_version=pinned.identity.version,
                model_requested=pinned.requested,
                files=sum(len(files) for files in segments),
                files_skipped=len(scan.skipped),
                files_added=sum(len(files) for files in segments) - recorded if manifest is not None else 0,
                stale_lock=lock.took_over,
                producer=stream.mode,
                stages_in_producer=stream.stages_in_producer,
            )
            # A resumed job is described as it was started (its --model and --input as first given).
            described = {"job": job.to_json(), "model": pinned.to_json()} if manifest is None else {
                "job": manifest["job"], "model": manifest["model"]
            }
            # An injected predictor (tests) may not say which backend it runs.
            backend = getattr(predictor, "backend", None)
            described["backend"] = backend.to_json() if backend is not None else None
            summary.backend = backend.summary() if backend is not None else None
            return _run(
                job, store, segments, scan.skipped, described, predictor, _Progress(progress, total), summary, started,
                stream, timings, manifest,
            )


def _check_settings(manifest: dict[str, Any], job: PredictJob, output: str | Path) -> None:
    if manifest.get("engine") == "spark":
        raise JobError(f"cannot resume {output}: the Spark engine wrote it, and Spark jobs are rerun, not resumed")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise JobError(
            f"cannot resume {output}: its {MANIFEST} is format_version {manifest.get('format_version')}, written "
            f"before jobs recorded their input files and model (format_version {FORMAT_VERSION}); finish it with "
            "the version that started it, or start again in another output directory"
        )
    recorded = _compared(manifest["job"])
    if recorded != job.settings_json():
        different = sorted(k for k, v in job.settings_json().items() if recorded.get(k) != v)
        raise JobError(
            f"cannot resume {output}: it was started with different settings ({', '.join(different)}); "
            "rerun with the original settings or choose another output directory"
        )


def _resumed_segments(
    manifest: dict[str, Any], current: list[InputFile], allow_new_inputs: bool, output: str | Path
) -> list[list[InputFile]]:
    """The recorded input files, in their segments and reading order (refused if any changed or vanished),
    then, with ``allow_new_inputs``, the files the job did not have as one new segment. The recorded order
    stands whatever order the inputs give now: it is the order of the committed shards."""
    recorded = [(InputFile.from_json(entry), entry["segment"]) for entry in manifest["inputs"]]
    now = {file.resolved: file for file in current}
    known = {file.resolved for file, _ in recorded}
    changes = []
    for file, _ in recorded:
        if file.resolved not in now:
            changes.append(f"removed: {file.path}")
        elif (now[file.resolved].bytes, now[file.resolved].sha256) != (file.bytes, file.sha256):
            changes.append(f"changed: {file.path} ({_difference(file, now[file.resolved])})")
    added = [file for file in current if file.resolved not in known]
    if changes or (added and not allow_new_inputs):
        if changes:
            advice = (
                "the committed shards hold records of the files as they were: restore them, or start again in "
                "another output directory" + (" (--allow-new-inputs only appends new files)" if allow_new_inputs else "")
            )
        else:
            advice = (
                "rerun with the original inputs, or pass --allow-new-inputs to predict the added files as new "
                "shards after the committed ones"
            )
        listing = "\n  ".join(changes + [f"added: {file.path}" for file in added])
        raise JobError(f"cannot resume {output}: its input files changed since the job started:\n  {listing}\n{advice}")
    segments: list[list[InputFile]] = []
    for file, segment in recorded:
        while len(segments) <= segment:
            segments.append([])
        # Read under the name recorded at the start when it still reaches the file: error records of a
        # resumed run then name their source as the first run's do.
        same_name = Path(file.path).resolve() == Path(file.resolved)
        segments[segment].append(dataclasses.replace(now[file.resolved], path=file.path) if same_name else now[file.resolved])
    return segments + ([added] if added else [])


def _difference(before: InputFile, now: InputFile) -> str:
    def size(file: InputFile) -> str:
        return "unreadable" if file.bytes is None else f"{file.bytes} bytes"

    if before.bytes != now.bytes:
        return f"{size(before)} at the start, {size(now)} now"
    return f"same size, different content: {before.sha256} at the start, {now.sha256} now"


def _check_model(recorded: dict[str, Any], pinned: PinnedModel, output: str | Path) -> None:
    advice = f"resume with --model {recorded['uri']} to finish the job with its model, or start again in another output directory"
    if recorded["uri"] != pinned.identity.uri:
        now = f"--model {pinned.requested}" + (
            f" now resolves to {pinned.identity.uri}" if pinned.requested != pinned.identity.uri else ""
        )
        raise JobError(
            f"cannot resume {output}: the model changed: the job runs {recorded['uri']} (version {recorded['version']}, "
            f"pinned from --model {recorded['requested']} at its start), and {now} (version {pinned.identity.version}); "
            f"{advice}"
        )
    if recorded["fingerprint"] != pinned.fingerprint:
        raise JobError(
            f"cannot resume {output}: the weights of {pinned.identity.uri} changed since the job started "
            f"({recorded['fingerprint']} then, {pinned.fingerprint} now); {advice}"
        )


def _run(
    job: PredictJob,
    store: ShardStore,
    segments: list[list[InputFile]],
    skipped: Sequence[SkippedFile],
    described: dict[str, Any],
    predictor: Predictor,
    progress: "_Progress",
    summary: JobSummary,
    started: float,
    stream: InProcessStream | ProducerProcess,
    timings: StageTimes,
    previous: dict[str, Any] | None = None,
) -> JobSummary:
    store.prepare()
    ran = (described.get("backend") or {}).get("ran")
    # A shard committed by an earlier run (``previous``: its manifest) keeps the backend that wrote it; one
    # committed after that run's last manifest update was written by that run's backend.
    earlier_default = ((previous or {}).get("backend") or {}).get("ran")
    earlier = {entry["index"]: entry.get("backend", earlier_default) for entry in (previous or {}).get("shards", [])}
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "status": "running",
        **described,
        "inputs": [{**file.to_json(), "segment": number} for number, files in enumerate(segments) for file in files],
        "skipped": [file.to_json() for file in skipped],
        "record_columns": list(RECORD_COLUMNS),
        "shards": [],
    }
    store.write_manifest(manifest)
    _pause_at("started")
    try:
        next_index = 0
        # Shards in order, each with its documents read and, when not committed, its model calls' sentences
        # and its story ids.
        items: Iterator[StreamItem] = iter(stream)
        for item in items:
            if isinstance(item, ProducerDone):
                timings.merge(item.seconds_by_stage)
                break
            shard: PreparedShard = item
            if shard.committed:
                summary.shards_skipped += 1
                sentences, errors = store.committed_counts(shard.index)
                progress.advance(len(shard.documents))
                backend = earlier.get(shard.index, earlier_default)
            else:
                sentences, errors = _predict_shard(shard, items, store, predictor, job, progress, summary, timings)
                backend = ran
            progress.advance(len(shard.errors))
            summary.shards += 1
            summary.documents += len(shard.documents)
            summary.sentences += sentences
            summary.errors += errors
            manifest["shards"].append(
                {
                    "index": shard.index,
                    "segment": shard.segment,
                    "records": str(store.records_path(shard.index).relative_to(store.root)),
                    "inputs": shard.sources,
                    "documents": len(shard.documents),
                    "sentences": sentences,
                    "errors": errors,
                    "backend": backend,
                }
            )
            with timings.stage("write"):
                store.write_manifest(manifest)
            next_index = shard.index + 1
        else:
            raise ProducerError("the input stream ended without its end mark")
        _pause_at("before-complete")
        with timings.stage("write"):
            store.write_errors_file(next_index)
            events = store.write_events_file(next_index)
        manifest["events"] = {"file": store.events_path.name, "rows": events, "columns": list(EVENT_COLUMNS)}
        summary.seconds = time.perf_counter() - started
        summary.seconds_by_stage = _breakdown(timings, stream, summary.seconds)
        manifest["status"] = "complete"
        manifest["totals"] = {"documents": summary.documents, "sentences": summary.sentences, "errors": summary.errors}
        # Of this run, not of the output: a resumed job's is its last run's.
        manifest["last_run"] = summary.timing_json()
        store.write_manifest(manifest)
    except BaseException as error:
        # The manifest says why the job stopped; the error goes on to the caller (the CLI exits non-zero).
        manifest["status"] = "failed"
        manifest["failure"] = f"{type(error).__name__}: {error}"
        store.write_manifest(manifest)
        raise
    finally:
        progress.close()
    return summary


def _predict_shard(
    shard: PreparedShard,
    items: Iterator[StreamItem],
    store: ShardStore,
    predictor: Predictor,
    job: PredictJob,
    progress: "_Progress",
    summary: JobSummary,
    timings: StageTimes,
) -> tuple[int, int]:
    """(sentences, errors) of a shard not yet committed: its model calls' splits taken from ``items``,
    predicted, its story ids (sent after the splits) added, and the shard committed."""
    by_document: list[list[SentenceRecord]] = []
    for documents, chunk in split_chunks(shard, items, job.inference.batch_size):
        if chunk.spans is None:  # an injected predictor without a split step
            grouped = predictor.predict_by_document(documents)
        else:
            grouped = predictor.predict_split(documents, chunk.spans, timings=timings)
        by_document += grouped
        summary.documents_predicted += len(documents)
        summary.sentences_predicted += sum(len(document_records) for document_records in grouped)
        progress.advance(len(documents), summary.sentences_predicted)
    assigned = shard_stories(shard, items)
    with timings.stage("decode"):
        records = _with_stories(by_document, assigned)
    del by_document
    _pause_at(f"before-commit:{shard.index}")
    with timings.stage("write"):
        store.commit(shard.index, records, shard.errors, before_rename=lambda: _pause_at(f"mid-commit:{shard.index}"))
    _pause_at(f"after-commit:{shard.index}")
    sentences = len(records)
    del records
    release_free_memory()  # RSS stays flat however many documents the archive holds
    return sentences, len(shard.errors)


def _breakdown(timings: StageTimes, stream: InProcessStream | ProducerProcess, wall: float) -> dict[str, float]:
    """Seconds per stage of :data:`STAGES`: ``wait`` is the model side's time blocked on the producer,
    ``other`` what the stages of this process leave of ``wall`` (manifest bookkeeping, the loop itself)."""
    seconds = {name: timings.seconds.get(name, 0.0) for name in STAGES}
    seconds["wait"] = stream.wait_seconds
    here = sum(value for name, value in seconds.items() if name not in stream.stages_in_producer and name != "other")
    seconds["other"] = max(0.0, wall - here)
    return seconds


def _with_stories(by_document: list[list[SentenceRecord]], assigned: list[StoryAssignment] | None) -> list[SentenceRecord]:
    """The shard's records in order (document, then sentence), each with its document's story ids."""
    if assigned is None:
        return [record for records in by_document for record in records]
    return [
        dataclasses.replace(record, story_id=story.story_id, duplicate_of=story.duplicate_of)
        for records, story in zip(by_document, assigned, strict=True)
        for record in records
    ]


def _pause_at(point: str) -> None:
    """The test hook of the module docstring: stop here and wait to be killed."""
    if os.environ.get(PAUSE_ENV) != point:
        return
    marker = os.environ.get(PAUSE_MARKER_ENV)
    if marker:
        Path(marker).write_text(f"{os.getpid()}\n", encoding="utf-8")
    time.sleep(120)
    # Never go on: a test that failed to kill the job must not find it finished.
    os._exit(PAUSE_EXIT_CODE)


class _Progress:
    """The bar of ``predict``: input records done (documents and bad records) of ``total`` (None: not
    counted; no ETA then), their rate, and the rate of sentences predicted in this run."""

    def __init__(self, enabled: bool, total: int | None):
        from tqdm.auto import tqdm

        self._bar = tqdm(desc="predict", unit="doc", total=total, disable=not enabled, dynamic_ncols=True)
        self._started = time.perf_counter()

    def advance(self, records: int, sentences: int | None = None) -> None:
        if sentences is not None:
            elapsed = time.perf_counter() - self._started
            self._bar.set_postfix_str(f"{sentences / elapsed if elapsed > 0 else 0.0:.1f} sentences/s", refresh=False)
        if records:
            self._bar.update(records)

    def close(self) -> None:
        self._bar.close()
