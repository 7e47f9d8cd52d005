"""The C allocator's handling of freed memory in the long-running processes.

Link workers: each link job ends with a garbage collection and `return_free_heap` (malloc_trim), so the
memory a fetch's reference cycles held is freed and its pages go back to the system (core.jobs.fetches
says what was measured).

The bot:

glibc serves a block larger than M_MMAP_THRESHOLD (128 KiB at start) with its own mmap and unmaps it on
free, but each time such a block is freed it raises the threshold to that block's size (up to 32 MiB).
After the bot has freed its first 1 MB upload, every later upload, download chunk and result array comes
from the heap instead, and heap pages pinned by one small live block stay in the process once freed. In
bench_soak the bot grew 30 MiB after its warm-up while its live Python allocations grew 1 MiB; malloc_trim
gave 24 MiB of it back (`bench_soak.py --probe-memory`). With the threshold fixed the bot ended the same
2 000-interaction soak at 110 MiB instead of 137, its slope +1.8 MiB per 1 000 instead of +3.0.

The chart renderer and the link workers fix it too (core.background). An analysis worker read between jobs
held 106 to 118 MiB depending on the clip it had last analysed (freed arrays kept in its heap; a garbage
collection returned nothing, malloc_trim 9 MiB). The threshold fixed held it at 104-105 MiB, but mapped and
page-faulted every large array of an analysis afresh (70-90 ms more system time a library track), so the
analysis workers keep glibc's threshold and `return_free_heap` after every task instead (core.jobs.pool).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

M_MMAP_THRESHOLD = -3
"""mallopt's parameter number (glibc malloc.h)."""
LARGE_BLOCK_BYTES = 128 * 1024
"""glibc's own starting threshold, now kept: one mmap/munmap pair per large block costs microseconds."""


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


def return_free_heap() -> bool:
    """Give the heap's free pages back to the system (glibc's malloc_trim(0), which also releases whole
    free pages inside the heap, not only at its top); False where the C library has no malloc_trim."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def keep_large_blocks_mapped(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """Fix glibc's mmap threshold at `threshold` for this process, so freed large blocks go back to the
    system; False (and nothing changed) on a C library without mallopt (musl, macOS, Windows)."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        log.debug("no mallopt in the C library: large blocks left to its defaults")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1


def then_return_free_heap(call: Callable[[], T], *, collect: bool = False) -> T:
    """`call()` in a pool worker, then (with `collect`, after a full garbage collection) the heap's free pages
    handed back, so what the worker holds between tasks does not depend on its last task. Module-level, so
    a pool can send it to its workers."""
    try:
        return call()
    finally:
        if collect:
            gc.collect()
        return_free_heap()
