"""The in-process implementation: a pool of spawned worker processes owned by this process.

Used by the bot and the CLI on one machine, and inside every `cratedigger worker` of the queue.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, TypeVar

from core.allocator import then_return_free_heap
from core.analysis import init_worker
from core.config import Settings
from core.errors import TooLarge, TooSlow, UnsupportedAudio
from core.jobs import Scheduler

log = logging.getLogger(__name__)
T = TypeVar("T")


class ProcessPool(Scheduler):
    """At most `queue_size` tasks pending (queued or running) on `workers` processes."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._slots = asyncio.Semaphore(max(1, settings.workers))
        self._pool: ProcessPoolExecutor | None = None  # started by the first task: most CLI verbs analyse nothing
        self._ready: list[Future[int]] = []
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    async def close(self) -> None:
        if self._pool is not None:
            await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._pending >= self.settings.queue_size:
            raise self._busy(self._pending)
        self._pending += 1
        try:
            with self._timed():
                # Trimmed after each task rather than glibc's mmap threshold fixed at 128 KiB, as the bot has
                # it: every large array of an analysis (sections, spectrograms, patches) was then mapped on
                # its own and page-faulted afresh: 42 000 faults and 94-125 ms of system time a 16-segment
                # library track, against 4 000 faults and 21-53 ms left alone (Debian devlib, one thread).
                # Trimmed after each track: 8 000 faults, 39-61 ms (models/similarity.md).
                return await self._in_pool(partial(then_return_free_heap, partial(fn, *args, **kwargs)))
        finally:
            self._pending -= 1

    async def _in_pool(self, call: Callable[[], T]) -> T:
        """A task that overruns the time bound gets its worker killed (the only way to stop it) and the
        pool replaced. Tasks that were running beside it lose their worker too and are retried once; a
        task whose worker dies twice is taken to be what killed it. Tasks still waiting in the replaced
        pool are cancelled by its shutdown, not by their caller: they run on the new pool."""
        crashes = 0
        while True:
            async with self._slots:
                if self._pool is None:
                    self._pool, self._ready = _new_pool(self.settings)
                pool = self._pool
                await self._warmed(self._ready)
                future = asyncio.get_running_loop().run_in_executor(pool, call)
                try:
                    return await asyncio.wait_for(future, self.settings.task_timeout_seconds)
                except asyncio.TimeoutError:
                    self._replace_pool(pool)
                    raise TooSlow(f"that took longer than {self.settings.task_timeout_seconds:g} s to analyse, "
                                  "so I stopped; try a shorter or simpler file.") from None
                except MemoryError:
                    raise TooLarge(f"that needs more than the {self.settings.worker_memory_mb} MB of memory an "
                                   "analysis may use; try a shorter or smaller file.") from None
                except BrokenProcessPool:
                    self._replace_pool(pool)
                    crashes += 1
                    if crashes == 2:
                        raise UnsupportedAudio("that file made the analyser crash; it cannot be analysed.") from None
                    log.warning("a worker process died; retrying the task on a fresh pool")
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if pool is self._pool or (task is not None and task.cancelling()):
                        raise  # our caller cancelled us
                    log.info("the pool was replaced before this task ran; running it on the new one")

    async def _warmed(self, ready: list[Future[int]]) -> None:
        """Wait (within a generous bound) until the pool's workers have started and warmed up, so that a
        task's time bound counts its own work only: not its wait behind other tasks (a task enters the pool
        only when a worker is free, `_slots`), nor a fresh worker's imports and model loading."""
        if all(f.done() for f in ready):
            return
        bound = max(120.0, 2 * self.settings.task_timeout_seconds)
        await asyncio.wait([asyncio.wrap_future(f) for f in ready], timeout=bound)

    def _replace_pool(self, broken: ProcessPoolExecutor) -> None:
        """Kill the workers of `broken` and start a new pool, once per broken pool."""
        if self._pool is not broken:
            return
        kill_pool(broken)
        self._pool, self._ready = _new_pool(self.settings)


def kill_pool(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's processes and drop its queued tasks: ProcessPoolExecutor offers no way to stop a
    running task (terminate_workers arrives in 3.14)."""
    for process in list(getattr(pool, "_processes", {}).values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def _new_pool(settings: Settings) -> tuple[ProcessPoolExecutor, list[Future[int]]]:
    """Spawned (not forked) workers: the parent runs threads (aiosqlite, asyncio) that fork would copy.

    Every worker is started now, and warms up in its initializer (core.analysis.warm_up): one trivial task
    per worker makes the executor spawn them all at once (it spawns a process per submission while none is
    idle). The returned futures finish when the workers are ready."""
    workers = max(1, settings.workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=init_worker, initargs=(settings.worker_memory_mb, settings.models_dir))
    return pool, [pool.submit(os.getpid) for _ in range(workers)]
