"""Load: 200 requests at once against the service's bounded queue.

Prints how many were answered and how many were told "busy", the time to the busy answer, and the peak
resident memory of the whole process tree (service + workers) while it lasts. Targets: every request gets
an answer or a Busy (none lost, none hangs), busy answers come within 50 ms, and peak RSS stays under
2 GiB. Exits 1 on a miss.

    .venv/bin/python benchmarks/bench_load.py [--requests 200] [--queue 32]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import Settings  # noqa: E402
from core.errors import Busy  # noqa: E402
from core.service import Service  # noqa: E402

RSS_TARGET_BYTES = 2 * 1024**3
BUSY_TARGET_SECONDS = 0.05


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        parents[int(entry)] = int(fields.get("PPid", "0").strip())
        rss[int(entry)] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    family, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, pp in parents.items() if pp == pid and p not in family]
        family.update(children)
        frontier.extend(children)
    return sum(rss.get(p, 0) for p in family)


async def run(requests: int, queue: int) -> int:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.wav"
        t = np.arange(30 * 22_050) / 22_050
        sf.write(clip, (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32),
                 22_050)
        service = await Service.open(Settings(data_dir=Path(tmp) / "data", queue_size=queue))
        peak = tree_rss(os.getpid())
        stop = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, tree_rss(os.getpid()))
                await asyncio.sleep(0.05)

        async def one() -> tuple[str, float]:
            started = time.perf_counter()
            try:
                await service.classify(clip)
                return "answered", time.perf_counter() - started
            except Busy:
                return "busy", time.perf_counter() - started

        sampler = asyncio.create_task(sample())
        started = time.perf_counter()
        try:
            results = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(requests))), timeout=900)
        finally:
            stop.set()
            await sampler
            await service.close()
        elapsed = time.perf_counter() - started
    answered = [s for kind, s in results if kind == "answered"]
    busy = [s for kind, s in results if kind == "busy"]
    print(f"requests {requests}, queue {queue}: answered {len(answered)}, busy {len(busy)}, "
          f"lost {requests - len(answered) - len(busy)} in {elapsed:.1f} s")
    if busy:
        print(f"busy answer: max {1000 * max(busy):.1f} ms")
    if answered:
        print(f"answered: p50 {np.median(answered):.2f} s, max {max(answered):.2f} s")
    print(f"peak RSS of the process tree: {peak / 2**20:.0f} MiB (target < {RSS_TARGET_BYTES / 2**20:.0f} MiB)")
    ok = (len(answered) + len(busy) == requests and peak < RSS_TARGET_BYTES
          and (not busy or max(busy) < BUSY_TARGET_SECONDS))
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--queue", type=int, default=32)
    args = parser.parse_args()
    return asyncio.run(run(args.requests, args.queue))


if __name__ == "__main__":
    sys.exit(main())
