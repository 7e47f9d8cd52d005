"""How long the event loop stalls while yt-dlp reads a large page: in a thread of the bot's process (how
links were fetched before issue 17) and in a link worker process (`core.jobs.fetches`, how they are now).

A local server answers with an HTML page of `--mb` megabytes (no media: yt-dlp parses it and refuses it).
While the fetch runs, a heartbeat coroutine sleeps 10 ms at a time and records how late it wakes up; the
figure is the longest delay (what every other command waits at worst) and the sum of delays over 50 ms.

    .venv/bin/python benchmarks/bench_fetch_loop.py --mb 14 --runs 3
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import Settings  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.fetch import fetch_audio  # noqa: E402
from core.jobs.fetches import FetchPool  # noqa: E402
from tests.http_fixture import LocalHTTPServer  # noqa: E402

TICK = 0.01


async def heartbeat(stop: asyncio.Event, delays: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(TICK)
        delays.append(time.perf_counter() - started - TICK)


def in_thread(url: str, settings: Settings, workdir: Path) -> None:
    try:
        with fetch_audio(url, settings, workdir):
            pass
    except UserError:
        pass


async def measure(how: str, url: str, settings: Settings, workdir: Path,
                  pool: FetchPool) -> tuple[float, float, float]:
    stop, delays = asyncio.Event(), []
    beat = asyncio.create_task(heartbeat(stop, delays))
    started = time.perf_counter()
    try:
        if how == "thread":
            await asyncio.to_thread(in_thread, url, settings, workdir)
        else:
            try:
                async with pool.fetched(url, workdir):
                    pass
            except UserError:
                pass
    finally:
        elapsed = time.perf_counter() - started
        stop.set()
        await beat
    return elapsed, max(delays, default=0.0), sum(d for d in delays if d > 0.05)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=14.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    server = LocalHTTPServer().start()
    line = "<div class=\"x\">words words</div>\n"
    body = line * int(args.mb * 2**20 / len(line))
    page = f"<html><head><title>big</title></head><body>{body}</body></html>"
    url = server.add_page("big.html", page)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), fetch_allow_hosts=("127.0.0.1",), max_download_seconds=120.0)
        pool = FetchPool(settings)
        await measure("process", url, settings, Path(tmp) / "w", pool)  # start the worker once
        print(f"page {len(page) / 2**20:.1f} MB, {args.runs} runs each; times in s")
        for how in ("thread", "process"):
            for run in range(args.runs):
                elapsed, worst, stalled = await measure(how, url, settings, Path(tmp) / "w", pool)
                print(f"{how:>7} run {run + 1}: fetch {elapsed:5.2f}  longest loop stall {worst:5.3f}  "
                      f"stalls over 50 ms add up to {stalled:5.2f}")
        await pool.close()
    server.stop()


if __name__ == "__main__":
    asyncio.run(main())
