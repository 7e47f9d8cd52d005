"""Link work (yt-dlp: listing playlists, downloading, and the conversion after it) in worker processes of
its own, bounded like analyses.

A link can keep yt-dlp busy for the whole download time cap (a server that trickles), and parsing a large
page holds the GIL for seconds. Run in this process's default thread pool, a few links from one member held
every other `asyncio.to_thread` call and stalled the event loop. Here they run in `fetch_workers` spawned
processes; at most `fetch_queue_size` more wait (beyond that: `Busy`), and one that outlives its time bound
(the download cap, the conversion's and a margin) has its process killed and replaced.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from core.allocator import then_return_free_heap
from core.config import Settings
from core.errors import Busy, FetchFailed
from core.fetch import NORMALISE_TIMEOUT_SECONDS, FetchedAudio, fetch_into, job_folder

log = logging.getLogger(__name__)
T = TypeVar("T")

STARTUP_MARGIN_SECONDS = 30.0
"""Time on top of the download and conversion caps: starting a worker, importing yt-dlp, parsing pages."""


class FetchPool:
    """`fetch_workers` processes for link work, `fetch_queue_size` waiting; nothing else runs there."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool = self._new_pool()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Link jobs running or waiting."""
        return self._pending

    def _new_pool(self) -> ProcessPoolExecutor:
        from core.analysis import init_worker

        # spawned, as the analysis workers are: the parent's threads (aiosqlite, asyncio) must not be forked
        return ProcessPoolExecutor(max_workers=max(1, self.settings.fetch_workers),
                                   mp_context=multiprocessing.get_context("spawn"), initializer=init_worker,
                                   initargs=(self.settings.worker_memory_mb,))

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a link worker, behind the bounded backlog and under the time bound."""
        limit = max(1, self.settings.fetch_workers) + self.settings.fetch_queue_size
        if self._pending >= limit:
            raise Busy(f"I'm busy with {self._pending} other links; try again in a minute.", retry_after=60.0)
        self._pending += 1
        try:
            # A fetch leaves reference cycles (yt-dlp's downloader, its HTTP session and the objects that
            # point back to them) holding C memory that tracemalloc does not see: sockets, TLS contexts with
            # their CA bundle. A worker allocates little between links, so the automatic collection of the
            # oldest generation came rarely: in bench_soak each link worker grew ~3 MiB per 1 000
            # interactions, and malloc_trim alone after each job changed nothing. Collected, then trimmed,
            # they stayed flat (+0.0 to +0.4). A full collection takes milliseconds, a download seconds.
            return await self._in_pool(partial(then_return_free_heap, partial(fn, *args), collect=True))
        finally:
            self._pending -= 1

    @contextlib.asynccontextmanager
    async def fetched(self, url: str, workdir: Path) -> AsyncIterator[FetchedAudio]:
        """The audio behind `url` (see `core.fetch`), in a job folder under `workdir` removed on exit,
        whatever happened to the worker (removing a folder of one short WAV does not hold the loop)."""
        with job_folder(workdir) as job_dir:
            yield await self.run(fetch_into, url, self.settings, job_dir)

    async def _in_pool(self, call: Callable[[], T]) -> T:
        pool = self._pool
        bound = self.settings.max_download_seconds + NORMALISE_TIMEOUT_SECONDS + STARTUP_MARGIN_SECONDS
        future = asyncio.get_running_loop().run_in_executor(pool, call)
        try:
            return await asyncio.wait_for(future, bound)
        except asyncio.TimeoutError:
            self._replace_pool(pool)
            raise FetchFailed("Getting that link took too long, so I stopped; try another link.") from None
        except BrokenProcessPool:
            self._replace_pool(pool)
            raise FetchFailed("Getting that link crashed its worker; try another link.") from None

    def _replace_pool(self, broken: ProcessPoolExecutor) -> None:
        """Kill the workers of `broken` (the only way to stop a running task) and start a new pool; the
        jobs that were running beside the stuck one fail with it and their users may retry."""
        from core.jobs.pool import kill_pool

        if self._pool is not broken:
            return
        kill_pool(broken)
        self._pool = self._new_pool()
        log.warning("a link worker was stuck or died; its pool was replaced")
