"""`cratedigger worker`: runs the queue's analysis jobs on this machine, on a `ProcessPool` of its own.

Its pool's processes load the models once each, as the bot's own pool does, and enforce the same time bound
and memory cap. It takes at most `CRATEDIGGER_WORKERS` jobs at a time (one per process).

Leases: arq marks a job "in progress" with a key that expires; a worker that dies stops renewing it, so its
jobs become runnable by another worker once the lease lapses (LEASE_SECONDS), however long the task time
bound is. A graceful stop (SIGTERM) lets running jobs finish for up to the time bound, then hands the rest
back to the queue.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from arq import Worker, func
from arq.constants import in_progress_key_prefix

from core.analysis import Limits
from core.config import Settings, redact
from core.errors import UnsupportedAudio
from core.jobs import models_version
from core.jobs.pool import ProcessPool
from core.jobs.queue import FUNCTION, MAX_TRIES, POLL_SECONDS, QUEUE_NAME, land, redis_settings

log = logging.getLogger(__name__)

LEASE_SECONDS = 10.0
RESULT_SECONDS = 3600
"""How long a result waits in Redis for the request that asked (it reads it within POLL_SECONDS)."""


def localise(values: tuple[Any, ...], named: dict[str, Any],
             settings: Settings) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A worker analyses with its own models folder, wherever the requesting process keeps its own."""
    def one(value: Any) -> Any:
        return dataclasses.replace(value, models_dir=settings.models_dir) if isinstance(value, Limits) else value

    return tuple(one(v) for v in values), {k: one(v) for k, v in named.items()}


async def _renew_lease(ctx: dict[str, Any]) -> None:
    key = in_progress_key_prefix + ctx["job_id"]
    while True:
        await asyncio.sleep(LEASE_SECONDS / 3)
        await ctx["redis"].pexpire(key, int(LEASE_SECONDS * 1000))


async def run_task(ctx: dict[str, Any], fn: Any, values: tuple[Any, ...], named: dict[str, Any]) -> Any:
    """One job: `fn(*values, **named)` on this worker's pool, its files landed in a private folder."""
    if ctx["job_try"] > MAX_TRIES:
        raise UnsupportedAudio("the analysis worker stopped twice while working on that; it cannot be analysed.")
    if ctx["job_try"] > 1:
        log.warning("job %s: try %d (its previous worker stopped mid-task)", ctx["job_id"], ctx["job_try"])
    settings: Settings = ctx["settings"]
    lease = asyncio.create_task(_renew_lease(ctx))
    folder = Path(tempfile.mkdtemp(prefix="job-", dir=_staging_dir(settings)))
    try:
        values, named = await asyncio.to_thread(land, values, named, folder)
        values, named = localise(values, named, settings)
        return await ctx["pool"].run(fn, *values, **named)
    finally:
        lease.cancel()
        await asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True)


def _staging_dir(settings: Settings) -> Path:
    path = settings.data_dir / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


async def run_worker(settings: Settings) -> None:
    """Serve the queue until SIGTERM/SIGINT."""
    pool = ProcessPool(settings)
    try:
        version = await pool.run(models_version, Limits.of(settings))
        log.info("worker ready: %d processes, models %s, queue %s", settings.workers, version,
                 redact(settings.broker_url))
        worker = Worker(
            functions=[func(run_task, name=FUNCTION, max_tries=MAX_TRIES + 1,  # the last try only says why
                            timeout=2 * settings.task_timeout_seconds + 30)],  # the pool's bound acts first
            queue_name=QUEUE_NAME, redis_settings=redis_settings(settings), max_jobs=max(1, settings.workers),
            poll_delay=POLL_SECONDS, keep_result=RESULT_SECONDS, log_results=False, handle_signals=True,
            job_completion_wait=int(settings.task_timeout_seconds), ctx={"pool": pool, "settings": settings},
        )
        worker.in_progress_timeout_s = LEASE_SECONDS
        with contextlib.suppress(asyncio.CancelledError):  # how arq ends its main task on a signal
            await worker.async_run()
        await worker.close()
    finally:
        await pool.close()
