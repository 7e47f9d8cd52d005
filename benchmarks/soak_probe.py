"""What grew in the bot during a `bench_soak.py --probe-memory` run, from the files it left in its folder:

    PYTHONPATH=. .venv/bin/python benchmarks/soak_probe.py /tmp/bench-soak-XXXX [--top 25]

- live objects by type at the end of the warm-up and at the end of the load, and the types that grew;
- discord.py's view store and message cache at both points;
- the allocations made after the warm-up and still alive at the end (tracing starts at the first probe),
  grouped by their traceback, largest first.
"""
from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    first, last = (json.loads((args.folder / f"probe-{n}.json").read_text()) for n in (0, 1))
    print(f"bot RSS {first['rss_kib'] / 1024:.0f} -> {last['rss_kib'] / 1024:.0f} MiB, "
          f"tasks {first['tasks']} -> {last['tasks']}, {last['t'] - first['t']:.0f} s apart")
    if "rss_kib_after_malloc_trim" in last:
        print(f"after malloc_trim(0) at the end: {last['rss_kib_after_malloc_trim'] / 1024:.0f} MiB (the rest of "
              f"the growth was free memory the C allocator kept)")
    print(f"discord.py: {first.get('discord')} -> {last.get('discord')}")
    grown = sorted(((last["objects"].get(k, 0) - first["objects"].get(k, 0), k) for k in last["objects"]),
                   reverse=True)
    print("objects that grew: " + ", ".join(f"{k} +{n}" for n, k in grown[:20] if n > 0))
    snapshot = tracemalloc.Snapshot.load(str(args.folder / "probe-1.trace"))
    stats = snapshot.statistics("traceback")
    total = sum(s.size for s in stats)
    print(f"allocated after the warm-up and alive at the end: {total / 1024 / 1024:.1f} MiB in "
          f"{sum(s.count for s in stats)} blocks; the largest sites:")
    for stat in stats[:args.top]:
        frames = " <- ".join(f"{Path(f.filename).parent.name}/{Path(f.filename).name}:{f.lineno}"
                             for f in reversed(stat.traceback))
        print(f"  {stat.size / 1024:8.0f} KiB {stat.count:7d} blocks  {frames}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
