"""Reindex speed on the real library, against a bare decode of the same audio, and what each speed costs in
quality: the curve from which CRATEDIGGER_LIBRARY_SEGMENTS is chosen.

For each number N of 3-s segments a library track is analysed on (spread over the track):

- **speed**: ../shared/data/library (68 real soundtracks) added to a fresh data folder through the
  service (the first analysis), then a full reindex of the same tracks: tracks/s of the reindex;
- **bare decode**: the same tracks decoded and cut exactly as the analysis does (`core.audio.load_segments`,
  sections only for long files) on the same number of worker processes, with no model: tracks/s, and the
  reindex's ratio to it (what the models and the service add);
- **CPU a track**: the pool workers' CPU time (and their ffmpeg children's) over the reindex, per track;
  the service's own ("parent": store writes, index build, unpickling results; 4 ms a track on the Debian
  devlib at 16 segments); and how many cores the service kept busy then (all CPU time over the wall
  time); on a shared machine these say more than tracks/s: two cores at that cost analyse 2 / CPU tracks
  a second;
- **stages** (`--stages N`): N of the tracks analysed in this process, one thread, with each stage's CPU
  time counted (`benchmarks/reindex_stages.py`: decode, mix-down, resampling, trim search, log-mel, network,
  the rest);
- **quality**: `benchmarks/bench_neighbours.py`'s figures for library entries of N segments (a 30-s
  excerpt from the middle of each track through 64 kb/s mp3: hit@1 and hit@5 of 68; an excerpt of another
  part: hit@5), and the mood model's cross-validated mean R² on Emotify with N segments per excerpt.

The target is >= 10 tracks/s on 2 cores at the shipped N; the exit code is 1 when it is missed.

    .venv/bin/python benchmarks/bench_reindex.py [--library DIR|devlib] [--workers 2] [--points 3,4,6,8,20]
        [--no-quality] [--stages N]

The speed at the shipped setting (16) and below on both dev libraries, with the split by stage:

    .venv/bin/python benchmarks/bench_reindex.py --no-quality --points 12,14,16 --stages 20
    .venv/bin/python benchmarks/bench_reindex.py --no-quality --points 12,14,16 --stages 20 --library devlib
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.reindex_stages import print_split, stage_split  # noqa: E402
from core.analysis import init_worker  # noqa: E402
from core.audio import AUDIO_EXTENSIONS, load_segments  # noqa: E402
from core.config import Settings  # noqa: E402
from core.service import Service  # noqa: E402

TARGET_TRACKS_PER_SECOND = 10.0
SHARED = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Speed:
    """One service run: the first analysis (add) and a full reindex of the same tracks."""

    add: float
    """tracks/s of the add"""
    reindex: float
    """tracks/s of the full reindex"""
    tracks: int
    cpu_per_track: float
    """CPU seconds of the pool workers (and their ffmpeg children) per track over the reindex"""
    parent_per_track: float
    """CPU seconds of this process (the service: store writes, index build, results from the workers) per
    track over the reindex"""
    cores_busy: float
    """CPU seconds of this process and its workers per wall second over the reindex"""


def _children_cpu() -> float:
    """CPU seconds used so far by this process's living child processes (the pool's workers) and the
    children they have reaped, read from /proc (Linux): the workers live on after the reindex, so
    getrusage(RUSAGE_CHILDREN) would not count them yet."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == os.getpid():  # fields[0] is the state, [1] the parent
            total += sum(int(f) for f in fields[11:15]) / ticks  # utime, stime, cutime, cstime
    return total


async def reindex_speed(library: Path, workers: int, segments: int) -> Speed:
    """The service's speed, models and all. The CPU figures cover the reindex only: the pool's workers have
    started, imported and warmed up during the add."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), workers=workers, library_segments=segments, queue_size=1000)
        service = await Service.open(settings)
        try:
            started = time.perf_counter()
            added = await service.add_to_library(0, [library])
            first = len(added.added) / (time.perf_counter() - started)
            children, own, started = _children_cpu(), time.process_time(), time.perf_counter()
            report = await service.reindex(0, full=True)
            wall = time.perf_counter() - started
            workers_cpu, own = _children_cpu() - children, time.process_time() - own
        finally:
            await service.close()
    analysed = max(1, report.analysed)
    return Speed(first, report.tracks_per_second, report.analysed, workers_cpu / analysed, own / analysed,
                 (workers_cpu + own) / wall)


def _decode_one(args: tuple[Path, float, int]) -> int:
    path, max_seconds, segments = args
    return len(load_segments(path, max_seconds=max_seconds, max_segments=segments))


def decode_speed(paths: list[Path], workers: int, segments: int, max_seconds: float) -> float:
    """Tracks/s of decode → trim → segment alone, on `workers` processes set up as the analysis pool's."""
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=init_worker) as pool:
        list(pool.map(_decode_one, [(paths[0], max_seconds, segments)] * workers))  # spawn and import first
        started = time.perf_counter()
        list(pool.map(_decode_one, [(p, max_seconds, segments) for p in paths]))
        return len(paths) / (time.perf_counter() - started)


def neighbour_curve(library: Path, points: tuple[int, ...]) -> dict[int, dict[str, dict[str, float]]]:
    from benchmarks.bench_neighbours import DEFAULT_CACHE, library_tracks
    from benchmarks.bench_neighbours import curve as neighbours_at
    from core.config import load_settings

    return neighbours_at(library_tracks(library, DEFAULT_CACHE, load_settings().models_dir), points)


def mood_curve(emotify: Path, points: tuple[int, ...]) -> dict[int, float]:
    """Mean R² of the mood model's GEMS head over the nine emotions, out of fold (nested CV, 5 folds by
    genre, 2 repeats), with each excerpt's track vector pooled from N of its segments spread over it, as a
    library track's would be."""
    from benchmarks.bench_neighbours import spread
    from core.config import load_settings
    from core.mood import track_vector
    from core.training import mood_train as mt
    from core.training.genre_data import embed_clips
    from core.training.mood_sources import _clips, read_emotify

    data = read_emotify(emotify)
    embedded = embed_clips(_clips("emotify", data.files), "clean", models_dir=load_settings().models_dir,
                           cache_dir=mt.DEFAULT_CACHE)
    out = {}
    for n in points:
        x = []
        for i in range(len(data.files)):
            mine = np.flatnonzero(embedded.clip == i)
            mine = mine[np.argsort(embedded.position[mine])]
            keep = mine[spread(len(mine), n)]
            x.append(track_vector(embedded.penultimate[keep], embedded.tags[keep]))
        preds = [mt.gems_out_of_fold(np.stack(x), data.gems, data.genres, mt.fit_gems_head, 5, r)
                 for r in range(2)]
        out[n] = float(np.mean([mt.r2_scores(data.gems, p).mean() for p in preds]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, default=SHARED / "library",
                        help="a folder of audio files, or devlib (benchmarks/fetch_devlib.py's cache)")
    parser.add_argument("--emotify", type=Path, default=SHARED / "emotify")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--points", default="3,4,6,8,20", help="segments per track to measure, comma-separated")
    parser.add_argument("--no-quality", action="store_true", help="speed only (quality needs ../shared's Emotify)")
    parser.add_argument("--stages", type=int, default=0, metavar="N",
                        help="also split the CPU of N tracks' analysis by stage, at each point")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if str(args.library) == "devlib":
        from benchmarks.fetch_devlib import DEFAULT_LIBRARY

        args.library = DEFAULT_LIBRARY
    if not args.library.is_dir():
        print(f"no library at {args.library}", file=sys.stderr)
        return 2
    points = tuple(int(p) for p in args.points.split(","))
    shipped = Settings().library_segments
    if shipped not in points:
        points = tuple(sorted({*points, shipped}))
    paths = sorted(p for p in args.library.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
    neighbours = neighbour_curve(args.library, points) if not args.no_quality else {}
    moods = mood_curve(args.emotify, points) if not args.no_quality and args.emotify.is_dir() else {}
    print(f"{len(paths)} library tracks in {args.library}, {args.workers} workers; shipped "
          f"CRATEDIGGER_LIBRARY_SEGMENTS={shipped}; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    print(f"{'segments':>8}  {'add t/s':>7}  {'reindex t/s':>11}  {'CPU/track':>9}  {'parent':>6}  "
          f"{'cores':>5}  {'decode t/s':>10}  "
          f"{'ratio':>5}  {'hit@1':>5}  {'hit@5':>5}  {'other@5':>7}  {'mood R²':>7}")
    shipped_speed, splits = 0.0, {}
    for n in points:
        run = asyncio.run(reindex_speed(args.library, args.workers, n))
        bare = decode_speed(paths, args.workers, n, Settings().max_clip_seconds)
        q = neighbours.get(n, {})
        hit = (f"{q['middle-mp3']['hit1']:>5}  {q['middle-mp3']['hit5']:>5}  {q['other-part']['hit5']:>7}"
               if q else f"{'—':>5}  {'—':>5}  {'—':>7}")
        mood = f"{moods[n]:>7.3f}" if n in moods else f"{'—':>7}"
        print(f"{n:>8}  {run.add:>7.2f}  {run.reindex:>11.2f}  {run.cpu_per_track * 1000:>7.0f}ms  "
              f"{run.parent_per_track * 1000:>4.0f}ms  {run.cores_busy:>5.2f}  {bare:>10.2f}  "
              f"{run.reindex / bare:>5.2f}  {hit}  {mood}"
              + ("   <- shipped" if n == shipped else ""), flush=True)
        if n == shipped:
            shipped_speed = run.reindex
        if args.stages:
            sample = paths[::max(1, len(paths) // args.stages)][:args.stages]
            splits[n] = stage_split(sample, segments=n)
    for n, (split, tracks) in splits.items():
        print_split(split, f"{n} segments, {tracks} tracks in this process, one thread")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    ok = shipped_speed >= TARGET_TRACKS_PER_SECOND
    print("target met" if ok else f"TARGET MISSED at the shipped {shipped} segments: {shipped_speed:.2f} tracks/s "
          f"(target >= {TARGET_TRACKS_PER_SECOND:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
