"""Make a helper process (analysis worker, chart renderer) a polite neighbour of the bot's event loop.

On a 2-core host the workers saturate both cores while the bot must still answer Discord within
milliseconds. Two things defeat a plain `os.nice(5)` in a pool initializer:

- Linux applies niceness per thread, and by the time an initializer runs the process already has threads
  (numpy's OpenBLAS pool starts when the parent's main module and the initializer's module import numpy).
  Those threads kept nice 0 and, spinning between BLAS calls, took 15 % of a core at the bot's priority.
- Environment variables such as OPENBLAS_NUM_THREADS only act on libraries loaded after they are set.

So every existing thread is reniced, BLAS pools already loaded are limited at run time, and the variables
are set for whatever loads later (numba, TensorFlow).

A helper also gives back the large blocks it frees (core.allocator), as the bot does: an analysis worker
otherwise kept the freed arrays of its largest clip in its heap, and its RSS between two jobs moved by up
to 11 MiB with what it had analysed before. The analysis workers do it by trimming their heap after each
task rather than by mapping every large block on its own, which cost them a page fault per page of every
array (core.jobs.pool).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def thread_ids() -> list[int]:
    """This process's thread ids (just the process id where /proc is not available)."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return [os.getpid()]
    return [int(name) for name in os.listdir(tasks) if name.isdigit()]


def lower_priority(niceness: int) -> None:
    """Set every current thread of this process to at least `niceness` (new threads inherit it)."""
    if not hasattr(os, "setpriority"):
        return
    for tid in thread_ids():
        try:
            current = os.getpriority(os.PRIO_PROCESS, tid)
            if current < niceness:
                os.setpriority(os.PRIO_PROCESS, tid, niceness)
        except (ProcessLookupError, PermissionError) as exc:  # a thread that just ended; a locked-down host
            log.debug("could not renice thread %d: %s", tid, exc)


def single_threaded_numerics() -> None:
    """One thread of numeric work per process: the pool's size is the parallelism we chose."""
    for var in THREAD_VARS:
        os.environ[var] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def one_blas_thread() -> None:
    """One BLAS thread in the serving process (bot, CLI). Its matrices are small (a query's segments against
    a few thousand rows), and OpenBLAS's threads spin between calls: an add of 150 tracks, screening each
    against the tracks before it, spent 13.5 s of CPU in the parent against 3.4 s with one thread, taken
    from the analysis workers it was waiting on. Limited at run time, so numpy loaded before still obeys."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def limit_memory(megabytes: int) -> None:
    """Cap this process's address space (0: no cap). An allocation past it fails (numpy: MemoryError; ffmpeg
    and other children inherit the cap) instead of pushing the host into swap or the OOM killer, which
    might pick the bot. Address space, not RSS, because that is what the kernel can enforce up front."""
    if megabytes <= 0:
        return
    import resource

    cap = megabytes * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def become_background(niceness: int, memory_mb: int = 0, *, map_large_blocks: bool = True) -> None:
    """All of the above: the initializer of every helper process pool. `map_large_blocks=False` leaves
    glibc's mmap threshold alone, for a pool that hands its heap back after every task instead (the
    analysis workers, core.jobs.pool: a fixed threshold had every large array of an analysis mapped and
    page-faulted afresh, 70-90 ms more system time a library track)."""
    from core.allocator import keep_large_blocks_mapped

    if map_large_blocks:
        keep_large_blocks_mapped()
    single_threaded_numerics()
    lower_priority(niceness)
    limit_memory(memory_mb)
