"""Keep the process's memory from growing with the archive.

Two things made the RSS of ``predict`` creep up with the number of documents (docs/BENCHMARKS.md):

- **oneDNN's primitive cache.** The bf16 matmuls run through oneDNN, which compiles and caches one
  primitive (with its buffers) per input shape, up to 1,024 of them. Our batches take a new (batch,
  length) shape every few batches, so the cache kept filling for the first ~500 documents of an
  archive. :func:`limit_onednn_primitive_cache` caps it at :data:`ONEDNN_CACHE_CAPACITY` entries;
  building a primitive takes microseconds next to a batch's matmuls, and throughput was unchanged.
  The cap is read when oneDNN creates its first primitive, so it is set when the CLI starts.
- **glibc's heap.** Freed tensor and record buffers stay resident in the heap; handing its free pages
  back once per shard (``malloc_trim(0)``, which releases free pages inside the heap, not only at its
  top) costs nothing measurable. (Pinning the mmap threshold at 1 MB instead, the first fix tried,
  kept RSS flat too but cost 27 % of fp32 and 43 % of bf16 throughput in page faults.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from typing import Any

ONEDNN_CACHE_CAPACITY = 8
_ONEDNN_CACHE_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"


def limit_onednn_primitive_cache(capacity: int = ONEDNN_CACHE_CAPACITY) -> str:
    """Cap oneDNN's primitive cache, unless the user already set ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``.
    Takes effect only before oneDNN's first primitive; returns the value in force."""
    return os.environ.setdefault(_ONEDNN_CACHE_VARIABLE, str(capacity))


@functools.lru_cache(maxsize=1)
def _glibc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def release_free_memory() -> bool:
    """Return the C heap's free pages to the OS (``malloc_trim(0)``). Returns False where the C library
    is not glibc (nothing to do there); True when the call ran."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
