"""Reindex speed on the real library: tracks/s on this machine, analysing up to 60 s of each track.

Adds ../shared/data/library (68 real soundtracks) to a fresh data folder (the first analysis), then runs a
full reindex of the same tracks, and reports tracks/s for both. "Up to 60 s per track" = at most 20
three-second segments, spread over the track. Target: >= 10 tracks/s; exits 1 when missed.

    .venv/bin/python benchmarks/bench_reindex.py [--library DIR] [--workers 2] [--segments 20]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import Settings  # noqa: E402
from core.service import Service  # noqa: E402

TARGET_TRACKS_PER_SECOND = 10.0


async def run(library: Path, workers: int, segments: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), workers=workers, max_segments=segments, queue_size=1000)
        opened = time.perf_counter()
        service = await Service.open(settings)
        print(f"service open (workers spawned, models loaded in one): {time.perf_counter() - opened:.1f} s")
        try:
            started = time.perf_counter()
            added = await service.add_to_library(0, [library])
            first = time.perf_counter() - started
            n = len(added.added)
            print(f"first analysis (add): {n} tracks in {first:.1f} s = {n / first:.2f} tracks/s "
                  f"({len(added.failed)} failed)")
            report = await service.reindex(0, full=True)
        finally:
            await service.close()
    print(f"full reindex: {report.analysed} tracks in {report.seconds:.1f} s = "
          f"{report.tracks_per_second:.2f} tracks/s on {workers} workers, <= {segments} segments "
          f"({segments * 3} s) per track; index holds {report.index_size}")
    ok = report.tracks_per_second >= TARGET_TRACKS_PER_SECOND
    print("target met" if ok else f"TARGET MISSED (>= {TARGET_TRACKS_PER_SECOND:g} tracks/s)")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, default=ROOT.parent / "shared" / "data" / "library")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--segments", type=int, default=20)
    args = parser.parse_args()
    if not args.library.is_dir():
        print(f"no library at {args.library}", file=sys.stderr)
        return 2
    return asyncio.run(run(args.library, args.workers, args.segments))


if __name__ == "__main__":
    sys.exit(main())
