"""What a Spark executor runs to read the archive (``inference/spark.py``, step 2): the local engine's
readers over ``binaryFile`` rows.

A module of its own, importing only the readers, so that the Python workers that read (and those that
compute shingles) do not import torch and the model code: each Spark stage with a Python function starts
its own workers, and only the prediction stage's need the model.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from conflict_events.sources import BadRecord, FileBytes, ReaderSettings, read_file

# One row per item a reader yields: a document (``doc``: its index among the file's documents) or a bad
# record (``reason`` set, the other fields as ``BadRecord.to_json()``); ``item`` orders both within the file.
PARSED_DDL = (
    "file_index bigint, item bigint, doc bigint, id string, text string, source string, line bigint, reason string"
)


def parse_files(settings: ReaderSettings, rows: Iterable[Any]) -> Iterator[tuple]:
    """A partition of ``(file_index, path, content)`` rows as :data:`PARSED_DDL` rows, by the local readers."""
    for row in rows:
        documents = 0
        for item, parsed in enumerate(read_file(FileBytes(row.path, bytes(row.content)), settings)):
            if isinstance(parsed, BadRecord):
                error = parsed.to_json()
                yield (row.file_index, item, None, error["id"], None, error["source"], error["line"], error["reason"])
            else:
                yield (row.file_index, item, documents, parsed.id, parsed.text, None, None, None)
                documents += 1
