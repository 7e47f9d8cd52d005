"""The job queue against the in-process pool: reindex throughput and the queue's overhead per task.

Starts its own Redis on a loopback port (Debian's redis-server) and `cratedigger worker` processes, adds
the library once (SQLite store), then times a full reindex of it:

- in-process pool with 1 and with 2 worker processes (the single-machine default);
- through the queue with 1 and with 2 `cratedigger worker` processes of 1 pool process each;

and prints tracks/s and the ratios queue(1)/pool(1), queue(2)/queue(1), queue(2)/pool(2). Then the overhead:
the round trip of a trivial task, sequentially, through each. One run of each (2 cores: figures move with
whatever else the machine does). Targets: the queue with one worker keeps >= 0.8 of the pool's throughput
with one process, and adds <= 50 ms per task; exits 1 when either is missed.

    .venv/bin/python benchmarks/bench_scale.py [--library DIR] [--segments N (default: CRATEDIGGER_LIBRARY_SEGMENTS's default)] [--tasks 200]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.cli.demo import DEMO_CLIPS  # noqa: E402
from core.config import Settings  # noqa: E402
from core.jobs import open_scheduler  # noqa: E402
from core.service import Service  # noqa: E402

CRATEDIGGER = Path(sys.executable).with_name("cratedigger")
MIN_QUEUE_RATIO = 0.8
MAX_OVERHEAD_MS = 50.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                             "no", "--dir", str(folder)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def workers(count: int, broker: str, folder: Path, segments: int) -> Iterator[None]:
    env = {**os.environ, "CRATEDIGGER_BROKER_URL": broker, "CRATEDIGGER_WORKERS": "1",
           "CRATEDIGGER_LIBRARY_SEGMENTS": str(segments)}
    procs, logs = [], []
    for n in range(count):
        log = folder / f"worker-{count}-{n}.log"
        logs.append(log)
        with open(log, "wb") as out:
            procs.append(subprocess.Popen([str(CRATEDIGGER), "worker", "--data-dir", str(folder / f"w{n}")],
                                          env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
    try:
        deadline = time.monotonic() + 300
        while not all("worker ready" in log.read_text() for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit("a worker did not start:\n" + "\n".join(log.read_text()[-2000:] for log in logs))
            time.sleep(0.1)
        yield
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=120)


async def reindex_rate(settings: Settings) -> float:
    service = await Service.open(settings)
    try:
        report = await service.reindex(0, full=True)
    finally:
        await service.close()
    assert not report.failed, report.failed
    return report.tracks_per_second


async def task_ms(settings: Settings, tasks: int) -> float:
    """Mean round trip of a trivial task, one at a time, after a warm-up."""
    scheduler = await open_scheduler(settings)
    try:
        await scheduler.run(abs, -1)
        started = time.perf_counter()
        for n in range(tasks):
            await scheduler.run(abs, -n)
        return (time.perf_counter() - started) / tasks * 1000
    finally:
        await scheduler.close()


async def run(library: Path, segments: int, tasks: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = Settings(data_dir=folder / "data", library_segments=segments, queue_size=1000, workers=2)
        service = await Service.open(base)
        try:
            added = await service.add_to_library(0, [library])
        finally:
            await service.close()
        n = len(added.added)
        print(f"library: {n} tracks from {library}, <= {segments} segments each")
        rates = {f"pool({w})": await reindex_rate(base.with_overrides(workers=w)) for w in (1, 2)}
        overhead = {"pool": await task_ms(base.with_overrides(workers=1), tasks)}
        with redis_server(folder) as broker:
            queued = base.with_overrides(broker_url=broker)
            for count in (1, 2):
                with workers(count, broker, folder, segments):
                    rates[f"queue({count})"] = await reindex_rate(queued)
                    if count == 1:
                        overhead["queue"] = await task_ms(queued, tasks)
    for name, rate in rates.items():
        print(f"full reindex, {name:9s}: {rate:6.2f} tracks/s")
    ratios = {"queue(1)/pool(1)": rates["queue(1)"] / rates["pool(1)"],
              "queue(2)/queue(1)": rates["queue(2)"] / rates["queue(1)"],
              "queue(2)/pool(2)": rates["queue(2)"] / rates["pool(2)"]}
    for name, ratio in ratios.items():
        print(f"ratio {name:18s}: {ratio:.2f}")
    extra = overhead["queue"] - overhead["pool"]
    print(f"trivial task round trip ({tasks} sequential): pool {overhead['pool']:.2f} ms, "
          f"queue {overhead['queue']:.2f} ms; the queue adds {extra:.2f} ms per task")
    ok = ratios["queue(1)/pool(1)"] >= MIN_QUEUE_RATIO and extra <= MAX_OVERHEAD_MS
    print("targets met" if ok else f"TARGET MISSED (queue(1)/pool(1) >= {MIN_QUEUE_RATIO}, overhead <= "
                                   f"{MAX_OVERHEAD_MS:g} ms)")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, default=ROOT.parent / "shared" / "data" / "library")
    parser.add_argument("--segments", type=int, default=Settings().library_segments)
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args()
    library = args.library if args.library.is_dir() else DEMO_CLIPS
    return asyncio.run(run(library, args.segments, args.tasks))


if __name__ == "__main__":
    sys.exit(main())
