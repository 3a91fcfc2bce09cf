"""Keep a bulk load's large, short-lived buffers in the heap instead of fresh memory mappings (glibc).

A warehouse load allocates and frees buffers of tens of megabytes per batch: the packed columns SQLite
hands over, their Python bytes copies, the offsets built from them. glibc serves every block above its
mmap threshold (at most 32 MiB, and only after it has seen one that size freed) with a new mapping and
unmaps it on free, so each batch first-touches all of its memory again: 300,000-450,000 page faults per
million events here. Keeping the buffers in the heap removes a quarter to a half of those, and 6-15% of
the load's CPU (docs/benchmarks.md). While `large_buffers_in_heap` is active, blocks up to 1 GiB come
from the heap and freed pages stay there for the next batch; on leaving, the settings go back to where
glibc's own adjustment settles in a long-running process and the free pages are returned to the system.

The settings are process-wide; overlapping uses (two loads in threads) share one activation. On
anything but glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

BULK_MMAP_THRESHOLD = 1 << 30
BULK_TRIM_THRESHOLD = 1 << 31
# Where glibc's dynamic threshold ends up once it has freed a 32 MiB block; it keeps the trim threshold at twice that.
SETTLED_MMAP_THRESHOLD = 32 << 20
SETTLED_TRIM_THRESHOLD = 64 << 20

_lock = threading.Lock()
_active = 0


def _load_glibc() -> Any | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(None)  # the symbols already loaded into this process, glibc's among them
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_GLIBC = _load_glibc()


def active_uses() -> int:
    """How many `large_buffers_in_heap` blocks are open right now (for tests and diagnostics)."""
    return _active


@contextmanager
def large_buffers_in_heap() -> Iterator[None]:
    global _active
    with _lock:
        _active += 1
        if _active == 1 and _GLIBC is not None:
            _GLIBC.mallopt(M_MMAP_THRESHOLD, BULK_MMAP_THRESHOLD)
            _GLIBC.mallopt(M_TRIM_THRESHOLD, BULK_TRIM_THRESHOLD)
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _GLIBC is not None:
                _GLIBC.mallopt(M_MMAP_THRESHOLD, SETTLED_MMAP_THRESHOLD)
                _GLIBC.mallopt(M_TRIM_THRESHOLD, SETTLED_TRIM_THRESHOLD)
                _GLIBC.malloc_trim(0)
