"""The in-process pool replaces itself when a task overruns or a worker dies; tasks that were still waiting
in the old pool must run on the new one, not end the command with a CancelledError traceback (seen from a
fresh clone: the demo's first library add, where cold caches made the first analyses overrun)."""
from __future__ import annotations

import asyncio
import operator
import time
from pathlib import Path

import pytest

from core.config import Settings
from core.jobs.pool import ProcessPool


def hold_the_worker(marker: str) -> str:
    """Runs in a worker: the first time, says so (creates `marker`) and holds its worker until killed; run
    again (the retry on the new pool), it returns at once."""
    path = Path(marker)
    if path.exists():
        return "ran again"
    path.touch()
    time.sleep(3600)
    return "never"


async def until(condition, what: str) -> None:
    """Poll `condition` (a cheap check of the world, not of time) for as long as it takes a worker to start."""
    for _ in range(6000):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def test_tasks_waiting_in_a_replaced_pool_run_on_the_new_one(tmp_path: Path) -> None:
    pool = ProcessPool(Settings(data_dir=tmp_path / "data", workers=1, task_timeout_seconds=3600,
                                worker_memory_mb=1536))
    marker = tmp_path / "holding"
    try:
        holder = asyncio.create_task(pool.run(hold_the_worker, str(marker)))
        await until(marker.exists, "the first task holds the only worker")
        # the executor hands one more task to its call queue (where it counts as running and is failed
        # with the pool, then retried); the ones after it still wait, cancellable, as in the demo's add
        waiting = [asyncio.create_task(pool.run(operator.add, i, 1)) for i in range(4)]
        given_up = asyncio.create_task(pool.run(operator.add, 1, 1))
        await until(lambda: pool.pending == 6, "every task waits in the pool")
        given_up.cancel()  # a caller's own cancellation still cancels
        with pytest.raises(asyncio.CancelledError):
            await given_up
        pool._replace_pool(pool._pool)  # what an overrunning task beside them makes the pool do
        assert await asyncio.gather(*waiting) == [1, 2, 3, 4]  # before the fix: CancelledError
        assert await holder == "ran again"  # its worker was killed: retried once, as before
    finally:
        await pool.close()


def sleep_then(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


async def test_a_task_is_timed_from_when_a_worker_takes_it(tmp_path: Path) -> None:
    """The time bound counts a task's own work: not its turn behind others on the only worker, nor the
    worker's start and warm-up. Each task sleeps 3.5 s of a 6-s bound; the third ends 10.5 s after it was
    asked for, which the bound used to count (TooSlow for the second and third, before the fix)."""
    pool = ProcessPool(Settings(data_dir=tmp_path / "data", workers=1, task_timeout_seconds=6,
                                worker_memory_mb=1536))
    try:
        results = await asyncio.gather(*(pool.run(sleep_then, 3.5, i) for i in range(3)))
        assert results == [0, 1, 2]
    finally:
        await pool.close()
