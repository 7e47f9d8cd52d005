"""The C allocator's handling of large blocks in the long-running bot process.

glibc serves a block larger than M_MMAP_THRESHOLD (128 KiB at start) with its own mmap and unmaps it on
free, but each time such a block is freed it raises the threshold to that block's size (up to 32 MiB).
After the bot has freed its first 1 MB upload, every later upload, download chunk and result array comes
from the heap instead, and heap pages pinned by one small live block stay in the process once freed. In
bench_soak the bot grew 30 MiB after its warm-up while its live Python allocations grew 1 MiB; malloc_trim
gave 24 MiB of it back (`bench_soak.py --probe-memory`). With the threshold fixed the bot ended the same
2 000-interaction soak at 110 MiB instead of 137, its slope +1.8 MiB per 1 000 instead of +3.0.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
"""mallopt's parameter number (glibc malloc.h)."""
LARGE_BLOCK_BYTES = 128 * 1024
"""glibc's own starting threshold, now kept: one mmap/munmap pair per large block costs microseconds."""


def keep_large_blocks_mapped(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """Fix glibc's mmap threshold at `threshold` for this process, so freed large blocks go back to the
    system; False (and nothing changed) on a C library without mallopt (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.debug("no mallopt in the C library (%s): large blocks left to its defaults", name)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1
