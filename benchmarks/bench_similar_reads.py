"""What one /similar query reads from the store, against the library's size: before, every ready track of the
guild with its segment vectors, tags and fingerprint (~39 KiB a track), and the library's tag profile made
from them; now, only the index's candidate tracks, with the tag profile read once per index version.

A real database (a SQLite file, or PostgreSQL with --database-url) filled with ready tracks shaped like real
ones (16 segments of 200-d vectors and 50 tags, a 2 800-landmark fingerprint). Timed per query, wall and
this thread's CPU: the store's read plus, before, the tag profile; the index search, ranking and reasons
cost the same either way and are left out. Target: the query's read does not grow with the library (at
the largest size at most 2x its cost at the smallest); exit 1 when it does.

    .venv/bin/python benchmarks/bench_similar_reads.py --sizes 250,1000,4000 --candidates 60
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.similar import tag_profile  # noqa: E402
from core.store import Store  # noqa: E402

GUILD = 1
SEGMENTS, DIM, TAGS, LANDMARKS = 16, 200, 50, 2800
GROWTH_LIMIT = 2.0


def _blob(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).tobytes()


async def fill(store: Store, n: int, rng: np.random.Generator) -> list[int]:
    """`n` ready tracks of the guild, written 250 to a transaction."""
    ids: list[int] = []
    await store.engine.transaction([("INSERT INTO guilds (id) VALUES (?) ON CONFLICT DO NOTHING", (GUILD,))])
    for start in range(0, n, 250):
        statements = []
        for i in range(start, min(n, start + 250)):
            segments = rng.standard_normal((SEGMENTS, DIM)).astype("<f4")
            landmarks = np.stack([rng.integers(0, 1 << 22, LANDMARKS), np.arange(LANDMARKS)], 1).astype("<u4")
            statements.append((
                "INSERT INTO tracks (guild_id, source, audio_path, content_hash, title, status, duration, "
                "analysis_version, embedding, embedding_kind, segment_embeddings, segment_tags, segment_starts, "
                "fingerprint, mood_scores) VALUES (?, ?, ?, ?, ?, 'ready', 48.0, 'bench', ?, 'musicnn-v1', ?, "
                "?, ?, ?, ?) RETURNING id",
                (GUILD, f"/music/{i}.ogg", f"/music/{i}.ogg", f"hash-{i}", f"Track {i}",
                 _blob(segments.mean(axis=0)), _blob(segments),
                 _blob(rng.random((SEGMENTS, TAGS)).astype("<f4")),
                 _blob(np.arange(SEGMENTS, dtype="<f4") * 3), _blob(landmarks), '{"calm": 0.5}')))
        results = await store.engine.transaction(statements)
        ids.extend(int(rows[0][0]) for rows, _ in results)
    return ids


def _cpu() -> float:
    return time.thread_time()


async def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of `await fn()`."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), _cpu()
        await fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(_cpu() - cpu)
    return 1e3 * statistics.median(walls), 1e3 * statistics.median(cpus)


async def measure(store: Store, ids: list[int], candidates: int, repeats: int,
                  rng: np.random.Generator) -> dict[str, float]:
    async def before() -> None:
        rows = await store.tracks(GUILD, status="ready")
        tag_profile(r.segment_tags for r in rows)

    async def now() -> None:
        await store.tracks_by_id(GUILD, rng.choice(ids, size=min(candidates, len(ids)), replace=False).tolist(),
                                 status="ready")

    async def profile_once() -> None:
        tag_profile(await store.ready_segment_tags(GUILD))

    b_wall, b_cpu = await timed(before, repeats)
    n_wall, n_cpu = await timed(now, repeats * 4)
    p_wall, p_cpu = await timed(profile_once, repeats)
    return {"before_ms": b_wall, "before_cpu_ms": b_cpu, "now_ms": n_wall, "now_cpu_ms": n_cpu,
            "profile_per_version_ms": p_wall}


async def run(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(0)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print(f"{'tracks':>7} {'before ms (cpu)':>18} {'now ms (cpu)':>15} {'ratio':>7} {'profile/version ms':>19}")
    now_costs = []
    with tempfile.TemporaryDirectory() as folder:
        for n in sizes:
            if args.database_url:
                store = await Store.open_url(args.database_url)
                await store.engine.transaction([("DELETE FROM tracks WHERE guild_id = ?", (GUILD,))])
            else:
                store = await Store.open(Path(folder) / f"bench-{n}.sqlite3")
            try:
                ids = await fill(store, n, rng)
                m = await measure(store, ids, args.candidates, args.repeats, rng)
            finally:
                await store.close()
            now_costs.append(m["now_ms"])
            print(f"{n:>7} {m['before_ms']:>9.1f} ({m['before_cpu_ms']:>6.1f}) {m['now_ms']:>7.2f} "
                  f"({m['now_cpu_ms']:>5.2f}) {m['before_ms'] / m['now_ms']:>6.0f}x {m['profile_per_version_ms']:>19.1f}")
    growth = now_costs[-1] / now_costs[0]
    print(f"{args.candidates} candidates a query; the query's read at {sizes[-1]} tracks is {growth:.2f}x its "
          f"cost at {sizes[0]} (target <= {GROWTH_LIMIT:g}x)")
    return 0 if growth <= GROWTH_LIMIT else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="250,1000,4000", help="library sizes (tracks), comma-separated")
    parser.add_argument("--candidates", type=int, default=60, help="candidate tracks a query reads")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--database-url", default="", help="a PostgreSQL database to fill (its tracks of "
                        f"guild {GUILD} are deleted first) instead of a SQLite file")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
