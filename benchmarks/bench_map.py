"""The library map at 50 000 tracks: time and peak memory of the projection and of the drawing.

Tracks are made, not analysed (analysing 50 000 clips would take hours): clusters of unit vectors of the
embedding's size, one per genre, so the map has structure to draw. Prints the seconds (best of
--repeats, untraced; the drawing's first call also pays matplotlib's import and font cache, shown apart) and,
in a separate traced run, the peak Python memory (tracemalloc: NumPy's arrays included, matplotlib's native
buffers not) of `fit_projection` + projecting every track, and of `draw_map`; then the whole process's peak
resident memory, which bounds everything; writes the PNG so it can be looked at.

    .venv/bin/python benchmarks/bench_map.py [--tracks 50000] [--out /tmp/library-map.png]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.constants import GENRES  # noqa: E402
from core.embedding import EMBEDDING_DIM  # noqa: E402
from core.library_map import draw_map, fit_projection  # noqa: E402


def library(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, list[str | None]]:
    """n unit vectors in len(GENRES) clusters of different sizes, 2 % of tracks without a genre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(GENRES), dim))
    weights = rng.dirichlet(np.full(len(GENRES), 2.0))
    which = rng.choice(len(GENRES), n, p=weights)
    vectors = centres[which] + rng.normal(scale=1.2, size=(n, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    genres: list[str | None] = [GENRES[i] for i in which]
    for i in rng.choice(n, n // 50, replace=False):
        genres[i] = None
    return vectors.astype(np.float32), genres


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def peak_memory(fn, *args, **kwargs) -> int:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    fn(*args, **kwargs)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/library-map.png"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    vectors, genres = library(args.tracks, EMBEDDING_DIM)
    print(f"{args.tracks} tracks of {EMBEDDING_DIM}-d embeddings ({vectors.nbytes / 2**20:.0f} MB)")

    def project() -> np.ndarray:
        return fit_projection(vectors)(vectors)

    runs = [timed(project) for _ in range(args.repeats)]
    points = runs[0][0]
    print(f"projection: {min(s for _, s in runs):.2f} s, peak {peak_memory(project) / 2**20:.0f} MB")
    draw = dict(title=f"Your library: {args.tracks:,} tracks".replace(",", " "), mark=points[0],
                mark_label="your clip")
    runs = [timed(draw_map, points, genres, **draw) for _ in range(args.repeats + 1)]
    png = runs[0][0]
    print(f"drawing:    {min(s for _, s in runs[1:]):.2f} s (first call {runs[0][1]:.2f} s), "
          f"peak {peak_memory(draw_map, points, genres, **draw) / 2**20:.0f} MB, "
          f"PNG {len(png) / 1024:.0f} kB")
    args.out.write_bytes(png)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
    print(f"whole process (library, projection, drawing, matplotlib's native buffers): peak RSS {rss:.0f} MB")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
