"""The batch job behind ``conflict-events predict``: document archives in, sentence records out in shards.

Output directory::

    manifest.json                 the job's parameters, its model, per-shard counts and totals
    records/part-00000.parquet    records of documents [0, shard_size), in input order (or .jsonl)
    errors/part-00000.jsonl       bad records met while reading those documents
    errors.jsonl                  all of errors/ concatenated, written when the job completes

A shard is the next ``shard_size`` good documents of the (deterministic) input stream. Each file is
written under a temporary name and renamed when complete, errors file first: a records file under its
final name is the commit of its shard. ``--resume`` re-reads the inputs, skips every committed shard
without running the model and redoes the rest, so after any crash (``kill -9`` included) the output ends
up exactly as an uninterrupted run's: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from conflict_events.config import InferenceConfig
from conflict_events.errors import ConflictEventsError
from conflict_events.inference.allocator import release_free_memory
from conflict_events.inference.predictor import Predictor
from conflict_events.sources import BadRecord, ReaderSettings, read_documents
from conflict_events.records import RECORD_COLUMNS, SentenceRecord, arrow_table
from conflict_events.schema import Document

MANIFEST = "manifest.json"
RECORDS_DIR = "records"
ERRORS_DIR = "errors"
ERRORS_FILE = "errors.jsonl"
FORMATS = ("parquet", "jsonl")
_TMP_MARK = ".tmp-"


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
    id_field: str = "id"

    @classmethod
    def create(
        cls,
        model: str,
        inputs: Sequence[str],
        inference: InferenceConfig | None = None,
        output_format: str = "parquet",
        text_field: str = "text",
        id_field: str = "id",
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
        # Flat, with the inference fields beside the others: the shape manifests have always had, so a
        # job started before the section was kept whole still resumes.
        return {
            "model": self.model,
            "inputs": list(self.inputs),
            "output_format": self.output_format,
            "text_field": self.text_field,
            "id_field": self.id_field,
            **self.inference.model_dump(mode="json"),
        }


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

    @property
    def documents_per_second(self) -> float:
        return self.documents_predicted / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        skipped = f" ({self.shards_skipped} already done, skipped)" if self.shards_skipped else ""
        return [
            f"documents: {self.documents}",
            f"sentences: {self.sentences}",
            f"errors:    {self.errors}",
            f"shards:    {self.shards}{skipped}",
            f"time:      {self.seconds:.1f}s, {self.documents_per_second:.1f} docs/s "
            f"({self.documents_predicted} documents predicted in this run)",
        ]


@dataclass
class _Shard:
    index: int
    documents: list[Document] = field(default_factory=list)
    errors: list[BadRecord] = field(default_factory=list)


def shards_of(items: Iterable[Document | BadRecord], shard_size: int) -> Iterator[_Shard]:
    """Consecutive shards of ``shard_size`` documents; a bad record belongs to the shard being filled
    when it is read. Bad records after the last full shard make a final shard without documents."""
    shard = _Shard(0)
    for item in items:
        if isinstance(item, BadRecord):
            shard.errors.append(item)
            continue
        shard.documents.append(item)
        if len(shard.documents) == shard_size:
            yield shard
            shard = _Shard(shard.index + 1)
    if shard.documents or shard.errors:
        yield shard


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

    def prepare(self) -> None:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self.errors_dir.mkdir(parents=True, exist_ok=True)
        # Leftovers of a write that was killed before its rename.
        for directory in (self.root, self.records_dir, self.errors_dir):
            for leftover in directory.glob(f"*{_TMP_MARK}*"):
                leftover.unlink()

    def commit(self, index: int, records: list[SentenceRecord], errors: list[BadRecord]) -> None:
        _write_atomic(self.errors_path(index), lambda path: _write_jsonl(path, [e.to_json() for e in errors]))
        if self.output_format == "parquet":
            _write_atomic(self.records_path(index), lambda path: _write_parquet(path, records))
        else:
            _write_atomic(self.records_path(index), lambda path: _write_jsonl(path, [r.to_json() for r in records]))

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
        return json.loads(path.read_text(encoding="utf-8"))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
        _write_atomic(self.root / MANIFEST, lambda path: path.write_text(text, encoding="utf-8"))


def _write_atomic(final: Path, write) -> None:
    temporary = final.with_name(f"{final.name}{_TMP_MARK}{os.getpid()}")
    write(temporary)
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, final)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_parquet(path: Path, records: list[SentenceRecord]) -> None:
    import pyarrow.parquet as pq

    pq.write_table(arrow_table(records), path)


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
    with (Path(output) / ERRORS_FILE).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def run_predict_job(
    job: PredictJob,
    output: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    predictor: Predictor | None = None,
) -> JobSummary:
    """Run (or finish, with ``resume``) a batch prediction job; returns its totals."""
    store = ShardStore(Path(output), job.output_format)
    manifest = store.read_manifest()
    if manifest is not None and not resume:
        raise JobError(
            f"{output} already holds a prediction job ({MANIFEST}); pass --resume to finish it "
            "or choose another output directory"
        )
    if manifest is not None and manifest["job"] != job.to_json():
        different = sorted(k for k, v in job.to_json().items() if manifest["job"].get(k) != v)
        raise JobError(
            f"cannot resume {output}: it was started with different settings ({', '.join(different)}); "
            "rerun with the original settings or choose another output directory"
        )
    if manifest is None and store.root.exists() and any(store.root.iterdir()) and not resume:
        raise JobError(f"output directory {output} is not empty; choose an empty or new directory")
    store.root.mkdir(parents=True, exist_ok=True)
    store.prepare()

    started = time.perf_counter()
    predictor = predictor or Predictor.from_uri(job.model, job.inference)
    identity = predictor.identity
    summary = JobSummary(model_uri=identity.uri, model_version=identity.version)
    manifest = {
        "format_version": 1,
        "status": "running",
        "job": job.to_json(),
        "model_uri": identity.uri,
        "model_version": identity.version,
        "record_columns": list(RECORD_COLUMNS),
        "shards": [],
    }
    store.write_manifest(manifest)

    bar = _progress_bar(progress)
    try:
        for shard in shards_of(read_documents(job.inputs, job.reader_settings), job.inference.shard_size):
            if store.is_committed(shard.index):
                sentences, errors = store.committed_counts(shard.index)
                summary.shards_skipped += 1
            else:
                records = []
                for chunk in _chunks(shard.documents, job.inference.batch_size):
                    records += predictor.predict_documents(chunk)
                    bar.update(len(chunk))
                store.commit(shard.index, records, shard.errors)
                sentences, errors = len(records), len(shard.errors)
                del records
                release_free_memory()  # RSS stays flat however many documents the archive holds
                summary.documents_predicted += len(shard.documents)
            summary.shards += 1
            summary.documents += len(shard.documents)
            summary.sentences += sentences
            summary.errors += errors
            manifest["shards"].append(
                {
                    "index": shard.index,
                    "records": str(store.records_path(shard.index).relative_to(store.root)),
                    "documents": len(shard.documents),
                    "sentences": sentences,
                    "errors": errors,
                }
            )
            store.write_manifest(manifest)
    finally:
        bar.close()
    store.write_errors_file(summary.shards)
    summary.seconds = time.perf_counter() - started
    manifest["status"] = "complete"
    manifest["totals"] = {"documents": summary.documents, "sentences": summary.sentences, "errors": summary.errors}
    store.write_manifest(manifest)
    return summary


def _chunks(documents: list[Document], size: int) -> Iterator[list[Document]]:
    # Documents per model call: each has several sentences, so `size` documents fill batches of `size`.
    for start in range(0, len(documents), size):
        yield documents[start : start + size]


def _progress_bar(enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(desc="predict", unit="doc", disable=not enabled, dynamic_ncols=True)
