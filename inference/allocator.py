"""Keep the C allocator from growing with the archive.

glibc's malloc raises its mmap threshold each time a large block is freed, so after a few batches the
tensor buffers of every later batch come from the heap instead of fresh mappings; with batch shapes
changing all the time the heap fragments and the process's RSS creeps up with the number of documents
(measured: 942 MB for 165 articles, 1,220 MB for 1,650). Pinning both thresholds stops the adjustment:
large buffers go back to the OS when freed and RSS stays flat (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
LARGE_BLOCK_BYTES = 1 << 20


def pin_malloc_thresholds(large_block_bytes: int = LARGE_BLOCK_BYTES) -> bool:
    """Serve blocks of ``large_block_bytes`` or more with mmap and trim the heap above that size.
    Returns False (and changes nothing) where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    pinned = bool(mallopt(_M_MMAP_THRESHOLD, large_block_bytes)) and bool(
        mallopt(_M_TRIM_THRESHOLD, large_block_bytes)
    )
    if not pinned:
        logger.debug("mallopt refused the thresholds; RSS may grow with the archive")
    return pinned
