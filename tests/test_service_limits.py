"""The scheduler's guarantees, for both implementations (this process's pool, and the job queue with real
Redis and real `cratedigger worker` processes): a task that overruns its time bound is stopped, one that
wants more memory than the cap is refused, a worker that dies does not take the service down, and the
service keeps answering afterwards. The queue's own: a killed worker's task is retried once on another and
then a clear error, a full backlog answers busy at once, and a waiting task is not lost."""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from core.config import Settings
from core.errors import Busy, TooLarge, TooSlow, UnsupportedAudio
from core.jobs.queue import QueueClient
from core.service import Service
from tests.audio_files import write_audio
from tests.conftest import synth_tone
from tests.processes import Process, start_worker
from tests.servers import Redis

pytestmark = pytest.mark.slow
LIMITS = {"CRATEDIGGER_WORKERS": 1, "CRATEDIGGER_TASK_TIMEOUT_SECONDS": 15, "CRATEDIGGER_WORKER_MEMORY_MB": 1536}


@pytest.fixture(scope="module")
def worker(redis_server: Redis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """One worker for the module's queue tests, with the same limits the pool tests give their service."""
    folder = tmp_path_factory.mktemp("worker")
    proc = start_worker(folder / "worker.log", folder / "data", redis_server.url(1), **LIMITS)
    proc.block_until_logged("worker ready")
    yield proc
    proc.stop()


@pytest_asyncio.fixture(params=["pool", "queue"])
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Service]:
    settings = Settings(data_dir=tmp_path / "data", workers=1, task_timeout_seconds=15, worker_memory_mb=1536)
    if request.param == "queue":
        request.getfixturevalue("worker")
        settings = settings.with_overrides(broker_url=request.getfixturevalue("redis_server").url(1))
    svc = await Service.open(settings)
    yield svc
    await svc.close()


async def test_overrunning_task_is_killed_and_service_recovers(service: Service, tmp_path: Path) -> None:
    with pytest.raises(TooSlow, match="longer than 15 s"):  # left alone, the task would return after 60 s
        await service._run(time.sleep, 60)  # stands in for a decoder stuck on a crafted file
    clip = write_audio(tmp_path / "clip.wav", synth_tone(4.0))
    report = await service.classify(clip)  # a fresh worker answers
    assert report.segments == 1


async def test_worker_process_that_dies_is_replaced(service: Service, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedAudio, match="crash"):
        await service._run(os._exit, 3)  # stands in for a decoder segfault
    clip = write_audio(tmp_path / "clip.wav", synth_tone(4.0))
    assert (await service.classify(clip)).segments == 1


def allocate(n_bytes: int) -> int:
    """Stands in for a decoder that a crafted header talks into allocating a huge buffer."""
    return len(bytearray(n_bytes))


async def test_task_past_the_memory_cap_is_refused_and_service_recovers(service: Service,
                                                                       tmp_path: Path) -> None:
    # 3 GiB would fit in this machine's 24 GiB; only the workers' 1.5 GiB address-space cap refuses it.
    with pytest.raises(TooLarge, match="1536 MB of memory"):
        await service._run(allocate, 3 * 2**30)
    clip = write_audio(tmp_path / "clip.wav", synth_tone(4.0))
    assert (await service.classify(clip)).segments == 1  # the same worker, still healthy


# ------------------------------------------------------------------------------------- the queue's own
async def _in_progress(redis_server: Redis) -> int:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_server.url(2))
    try:
        return len(await client.keys("arq:in-progress:*"))
    finally:
        await client.aclose()


async def test_a_killed_workers_task_runs_again_then_a_clear_error(redis_server: Redis, tmp_path: Path) -> None:
    url = redis_server.url(2)
    redis_server.flush()
    client = await QueueClient.open(Settings(data_dir=tmp_path, broker_url=url, workers=1))
    workers: list[Process] = []
    try:
        def new_worker() -> Process:
            workers.append(start_worker(tmp_path / f"worker{len(workers)}.log", tmp_path / "w", url, **LIMITS))
            return workers[-1]

        first = new_worker()
        await first.wait_for_log("worker ready")
        task = asyncio.ensure_future(client.run(time.sleep, 6))
        await first.wait_for_log(":run_task(")  # arq logs each job it starts
        first.kill()  # mid-task, with its pool: no chance to hand the job back
        second = new_worker()
        assert await asyncio.wait_for(task, 120) is None  # done by the second worker
        assert "try 2" in second.text() and "try 3" not in second.text()

        twice = asyncio.ensure_future(client.run(time.sleep, 30))
        for victim in (second, new_worker()):
            await victim.wait_for_log(f":run_task({time.sleep!r}, (30,)")
            victim.kill()
        new_worker()
        with pytest.raises(UnsupportedAudio, match="stopped twice"):
            await asyncio.wait_for(twice, 120)
        assert not await _in_progress(redis_server)
    finally:
        for proc in workers:
            proc.stop()
        await client.close()


async def test_a_full_backlog_answers_busy_at_once_and_loses_nothing(redis_server: Redis,
                                                                    tmp_path: Path) -> None:
    url = redis_server.url(3)
    client = await QueueClient.open(Settings(data_dir=tmp_path, broker_url=url, queue_size=3, workers=1))
    worker = None
    try:
        waiting = [asyncio.ensure_future(client.run(pow, 2, n)) for n in range(3)]  # no worker yet
        while await client.backlog() < 3:
            await asyncio.sleep(0.05)
        with pytest.raises(Busy, match="try again in about") as busy:  # at once: with no worker yet, room
            await asyncio.wait_for(client.run(pow, 2, 10), 120)     # would never come (120 s: hang guard)
        assert busy.value.retry_after > 0
        worker = start_worker(tmp_path / "worker.log", tmp_path / "w", url, CRATEDIGGER_WORKERS=1)
        assert await asyncio.wait_for(asyncio.gather(*waiting), 120) == [1, 2, 4]  # every waiting task ran
        assert await client.backlog() == 0
    finally:
        if worker is not None:
            worker.stop()
        await client.close()


async def _queued(url: str) -> int:
    """Jobs in the queue at `url`; -1 while that Redis cannot be reached."""
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    client = aioredis.from_url(url)
    try:
        return int(await client.zcard("cratedigger:analysis"))
    except (RedisError, OSError):
        return -1
    finally:
        await client.aclose()


async def _until(predicate_value, wanted: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(1200):  # at most two minutes: what is awaited is an event, not a duration
        if await predicate_value() == wanted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never reached {wanted}")


async def test_a_redis_restart_loses_no_waiting_request(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Redis killed with SIGKILL and started again, empty, while a request waits for its queued job: the
    request rides through the outage, submits its job again, and gets its one result once a worker runs."""
    from tests.servers import Redis as RedisAddress
    from tests.servers import _stop, free_port, start_redis

    port = free_port()
    url = RedisAddress(port).url(0)
    redis_proc = start_redis(tmp_path, port)
    client = await QueueClient.open(Settings(data_dir=tmp_path, broker_url=url, workers=1))
    worker = None
    try:
        with caplog.at_level("WARNING", logger="core.jobs.queue"):
            waiting = asyncio.ensure_future(client.run(pow, 3, 4))  # no worker yet: it stays queued
            await _until(lambda: _queued(url), 1)
            redis_proc.kill()  # SIGKILL: no chance to save anything (and nothing is configured to be saved)
            redis_proc.wait()
            redis_proc = start_redis(tmp_path, port)  # as a supervisor restarts it: empty
            await _until(lambda: _queued(url), 1)  # the waiting request submitted its job again
            assert not waiting.done()
            worker = start_worker(tmp_path / "worker.log", tmp_path / "w", url, CRATEDIGGER_WORKERS=1)
            assert await asyncio.wait_for(waiting, 120) == 81
        assert any("submitting it again" in r.getMessage() for r in caplog.records)
        assert await _queued(url) == 0  # ran once: nothing left behind, nothing doubled
    finally:
        if worker is not None:
            worker.stop()
        await client.close()
        _stop(redis_proc)
