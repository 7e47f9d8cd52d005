"""Where CPU-heavy work runs, behind one interface: `await scheduler.run(fn, *args, **kwargs)`.

Two implementations keep the same guarantees, so a use case never knows which one runs it:

- `core.jobs.pool.ProcessPool` (the default): worker processes of this process;
- `core.jobs.queue.QueueClient` (`CRATEDIGGER_BROKER_URL` set): an arq job queue on Redis, run by
  `cratedigger worker` processes on any machine (`core.jobs.worker`), each with a `ProcessPool` of its own.

The guarantees: a bounded backlog (beyond it `Busy` with an estimate of when to retry), a time bound per
task (its process is killed: `TooSlow`), a memory cap per worker process (`TooLarge`), a worker that dies
mid-task retried once and then a clear error, and no task lost while it waits.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from core.analysis import Limits, analysis_version
from core.config import Settings
from core.errors import Busy

T = TypeVar("T")


class Scheduler(ABC):
    """Runs functions (module-level, picklable, with picklable arguments) away from the event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._task_seconds = 2.0
        """Running estimate of one task's duration, for Busy's retry_after."""

    @abstractmethod
    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in a worker process, under the guarantees above."""

    @abstractmethod
    async def close(self) -> None: ...

    def _busy(self, backlog: int) -> Busy:
        wait = self._task_seconds * backlog / max(1, self.settings.workers)
        return Busy(f"I'm busy with {backlog} other requests; try again in about {wait:.0f} s.", retry_after=wait)

    @contextmanager
    def _timed(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._task_seconds = 0.8 * self._task_seconds + 0.2 * (time.perf_counter() - started)


def models_version(limits: Limits) -> str:
    """The analysis version of the models a worker has: a task of its own so that it names the models of
    whichever worker runs it (a queue worker uses its own models folder, see `core.jobs.worker`)."""
    return analysis_version(limits.models_dir)


async def open_scheduler(settings: Settings) -> Scheduler:
    """The queue when a broker is configured, else this process's own pool."""
    if settings.broker_url.strip():
        from core.jobs.queue import QueueClient

        return await QueueClient.open(settings)
    from core.jobs.pool import ProcessPool

    return ProcessPool(settings)
