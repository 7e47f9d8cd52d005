"""The queue implementation: tasks go to `cratedigger worker` processes through an arq queue on Redis.

arq rather than Celery or Dramatiq: it is asyncio-native on both sides, so the bot enqueues and awaits a
result on its own event loop without a thread per waiting request (Celery's and Dramatiq's result APIs
block); a job stays in Redis until a worker has finished it, so a worker that dies loses nothing; and a
per-job try counter gives "retry once, then a clear error" directly. It is small (a queue, a worker, two
dependencies). Its maintainers keep it in maintenance-only mode: we use a narrow, stable part of it.

How each guarantee holds across the queue:
- bounded backlog: before enqueueing, the queue's length (waiting plus running jobs, from every process) is
  compared with CRATEDIGGER_QUEUE_SIZE; beyond it, `Busy`.
- time bound and memory cap: enforced inside the worker by its own `ProcessPool` (same settings), which
  kills an overrunning task's process; the error travels back as the job's result.
- a worker killed mid-task: its jobs' leases (`core.jobs.worker.LEASE_SECONDS`) lapse and another worker
  runs them again; a job whose worker died twice fails with `UnsupportedAudio`, a clear one-line reason.
- nothing lost: a job leaves Redis only once a worker has stored its result; a request gives up after
  CRATEDIGGER_QUEUE_WAIT_SECONDS, and its job expires with it, so no worker runs it for nobody.
- a Redis restart: Redis is not trusted to keep anything (the tests and bench_faults run it without
  persistence). A request that is still waiting rides through the outage, retrying the connection every
  RECONNECT_SECONDS, and when Redis is back without its job (not queued, not running, no result) it submits
  the same job again under the same id. So a restart costs the wait and, for a job that was running, its
  analysis once more (tasks are pure: the database writes happen in the requesting process, once); it
  loses nothing and doubles nothing. A request that finds Redis down before enqueueing waits for it the
  same way, within CRATEDIGGER_QUEUE_WAIT_SECONDS.

Workers share no disk with the bot: a `pathlib.Path` argument naming a file travels as the file's bytes
(uploads and downloads are capped in size) and lands in a temporary folder of the worker.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import result_key_prefix
from arq.jobs import JobResult, SerializationError, deserialize_result
from redis.exceptions import RedisError

from core.config import Settings, redact
from core.errors import TooSlow
from core.jobs import Scheduler

log = logging.getLogger(__name__)
T = TypeVar("T")

QUEUE_NAME = "cratedigger:analysis"
FUNCTION = "run_task"
MAX_TRIES = 2
"""A job runs at most twice: once, and once more if its worker died."""
POLL_SECONDS = 0.02
"""How often an idle worker looks for jobs and a waiting request for its result: arq polls, one cheap Redis
round trip each. Both sides' polling makes most of the queue's per-task overhead (benchmarks/bench_scale.py:
about 60 ms at 0.05 s)."""
RECONNECT_SECONDS = 0.5
"""How often a request retries a queue it cannot reach (Redis restarting)."""


@dataclass(frozen=True)
class ShippedFile:
    """A file argument on its way to a worker: its name (the extension tells the format) and its bytes."""

    name: str
    data: bytes = field(repr=False)  # arq logs each job's arguments


def ship(values: tuple[Any, ...], named: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Replace Path arguments that name files by their contents (blocking reads: run it in a thread)."""
    def one(value: Any) -> Any:
        if isinstance(value, Path) and value.is_file():
            return ShippedFile(value.name, value.read_bytes())
        return value

    return tuple(one(v) for v in values), {k: one(v) for k, v in named.items()}


def land(values: tuple[Any, ...], named: dict[str, Any], folder: Path) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The worker's side of `ship`: write shipped files into `folder` and pass their paths instead."""
    count = 0

    def one(value: Any) -> Any:
        nonlocal count
        if not isinstance(value, ShippedFile):
            return value
        count += 1
        path = folder / f"{count}{Path(value.name).suffix.lower()}"
        path.write_bytes(value.data)
        return path

    return tuple(one(v) for v in values), {k: one(v) for k, v in named.items()}


def redis_settings(settings: Settings) -> RedisSettings:
    url = settings.broker_url.strip()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("CRATEDIGGER_BROKER_URL must be a redis:// URL (empty: analyse in this process)")
    return RedisSettings.from_dsn(url)


class QueueClient(Scheduler):
    def __init__(self, settings: Settings, redis: ArqRedis) -> None:
        super().__init__(settings)
        self._redis = redis

    @classmethod
    async def open(cls, settings: Settings) -> QueueClient:
        log.info("analysis jobs go to the queue at %s", redact(settings.broker_url))
        redis = await create_pool(redis_settings(settings), default_queue_name=QUEUE_NAME)
        return cls(settings, redis)

    async def close(self) -> None:
        await self._redis.aclose()

    async def backlog(self) -> int:
        """Jobs waiting or running, from every process of the deployment."""
        return int(await self._redis.zcard(QUEUE_NAME))

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        wait = self.settings.queue_wait_seconds
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        backlog = await self._reaching(self.backlog, deadline)
        if backlog >= self.settings.queue_size:
            raise self._busy(backlog)
        with self._timed():
            values, named = await asyncio.to_thread(ship, args, kwargs)
            job_id = uuid.uuid4().hex

            async def submit() -> None:
                # None when a job of this id (or its result) is there already: it is kept, not doubled.
                await self._redis.enqueue_job(FUNCTION, fn, values, named, _job_id=job_id, _expires=wait)

            await self._reaching(submit, deadline)
            while True:
                outcome = await self._reaching(lambda: self._outcome(job_id), deadline)
                if outcome is None:
                    log.warning("job %s is gone from the queue without a result (Redis restarted?); "
                                "submitting it again", job_id)
                    await self._reaching(submit, deadline)
                    continue
                if outcome.success:
                    return outcome.result  # type: ignore[no-any-return]
                if isinstance(outcome.result, BaseException):
                    raise outcome.result
                raise SerializationError(outcome.result)

    async def _outcome(self, job_id: str) -> JobResult | None:
        """The job's stored result once there is one; None if Redis has neither the job nor its result."""
        while True:
            async with self._redis.pipeline(transaction=True) as tr:
                tr.get(result_key_prefix + job_id)
                tr.zscore(QUEUE_NAME, job_id)
                raw, score = await tr.execute()
            if raw:
                return deserialize_result(raw, deserializer=self._redis.job_deserializer)
            if score is None:
                return None
            await asyncio.sleep(POLL_SECONDS)

    async def _reaching(self, call: Callable[[], Awaitable[T]], deadline: float) -> T:
        """`call()` against Redis, retried while Redis cannot be reached, until `deadline` (loop time)."""
        loop = asyncio.get_running_loop()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                return await asyncio.wait_for(call(), remaining)
            except asyncio.TimeoutError:
                break
            except (RedisError, OSError) as exc:
                log.warning("the job queue is unreachable (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(min(RECONNECT_SECONDS, max(0.0, deadline - loop.time())))
        raise TooSlow(f"no analysis worker finished that within {self.settings.queue_wait_seconds:g} s; "
                      "try again later.")
