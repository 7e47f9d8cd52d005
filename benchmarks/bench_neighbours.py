"""Neighbour quality of track embeddings on the real library: does an excerpt find its own track?

The library entry of each track of ../shared/data/library/ is the track as the library analyses it: N
segments spread over the whole (trimmed) track (--segments, the library's setting by default). Queries:
  middle-mp3    the middle 30 s of the track through a 64 kb/s mp3 and back, cut as an upload is: the
                team's check;
  other-part    the same query against entries made without the segments that overlap it, so the query
                must be recognised from other parts of the track;
  reencoded     a 64 kb/s mp3 copy of the whole track, analysed as the library would analyse it.
Each query scores hit@1, hit@5 and the mean reciprocal rank of its own track among all entries, by exact
cosine search (this measures the embedding, not an index). Kinds: today's descriptor-v1 (its own policy: the
service's max_segments spread over the track) and the front-end kinds (pooling variants), side by side,
then the quality-speed curve of the shipped front-end kind over N.

Front-end outputs of every segment of every track (and of the copies and queries) are computed once and
cached by the front-end's identity, so a rerun only pools.

    .venv/bin/python benchmarks/bench_neighbours.py [--library DIR] [--segments N] [--cache-dir DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from core import audio, embedding  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.constants import SAMPLE_RATE, SEGMENT_SAMPLES, SILENCE_TOP_DB  # noqa: E402
from core.features import SegmentFeatures  # noqa: E402

log = logging.getLogger("bench_neighbours")

QUERY_SECONDS = 30.0
REENCODE_BITRATE = "64k"
MAX_TRACK_SECONDS = 900.0
CURVE = (2, 3, 4, 6, 8, 12, 20, 40)
DEFAULT_CACHE = Path.home() / ".cache" / "cratedigger" / "bench-neighbours"
"""Per-track front-end outputs, kept between runs outside the repository (bench_reindex reads the same)."""
QUERIES = ("middle-mp3", "other-part", "reencoded")
SEGMENT_SECONDS = SEGMENT_SAMPLES / SAMPLE_RATE


def mp3_round_trip(y: np.ndarray) -> np.ndarray:
    """Through the bundled ffmpeg at REENCODE_BITRATE and back, as a re-encoded copy would reach us."""
    with tempfile.TemporaryDirectory(prefix="bench-neighbours-") as tmp:
        mp3 = Path(tmp) / "copy.mp3"
        cmd = [audio.ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(SAMPLE_RATE),
               "-ac", "1", "-i", "pipe:0", "-codec:a", "libmp3lame", "-b:a", REENCODE_BITRATE, str(mp3)]
        subprocess.run(cmd, input=np.ascontiguousarray(y, dtype="<f4").tobytes(), check=True, timeout=300)
        return audio.decode(mp3, max_seconds=MAX_TRACK_SECONDS)


@dataclass(frozen=True)
class Track:
    """Front-end outputs of every segment of the trimmed track and of its copy, and of the query; the
    query's window in the trimmed track's time; descriptors for descriptor-v1 (entry, copy and query)."""

    name: str
    pen: np.ndarray
    tags: np.ndarray
    copy_pen: np.ndarray
    copy_tags: np.ndarray
    query_pen: np.ndarray
    query_tags: np.ndarray
    query_window: tuple[float, float]
    descriptors: dict[str, np.ndarray]


def spread(n_all: int, n: int) -> np.ndarray:
    """Which of n_all consecutive segments a clip keeps when limited to n (core.audio.segment's rule)."""
    if n_all <= n:
        return np.arange(n_all)
    return np.unique(np.linspace(0, n_all - 1, n).round().astype(int))


def _analyse_track(path: Path, network, old_segments: int) -> Track:
    from core.features import extract

    y = audio.decode(path, max_seconds=MAX_TRACK_SECONDS)
    trimmed = audio.trim_silence(y, name=path.name)
    import librosa

    _, kept = librosa.effects.trim(y, top_db=SILENCE_TOP_DB, frame_length=2048, hop_length=512)
    lead = kept[0] / SAMPLE_RATE  # the query's window is given in the trimmed track's time
    every = audio.segment(trimmed, max_segments=10**6)
    copy = audio.segment(audio.trim_silence(mp3_round_trip(y), name=path.name), max_segments=10**6)
    middle = max(0.0, y.size / SAMPLE_RATE / 2 - QUERY_SECONDS / 2)
    clip = y[int(middle * SAMPLE_RATE):int((middle + QUERY_SECONDS) * SAMPLE_RATE)]
    query = audio.segment(audio.trim_silence(mp3_round_trip(clip), name=path.name), max_segments=40)
    out = {k: network.embed_segments(s.audio) for k, s in (("all", every), ("copy", copy), ("query", query))}
    old = {
        "entry": extract(audio.segment(trimmed, max_segments=old_segments)).descriptors,
        "copy": extract(audio.Segments(copy.audio[spread(len(copy), old_segments)],
                                       copy.starts[spread(len(copy), old_segments)], copy.clip_seconds)).descriptors,
        "query": extract(query).descriptors,
    }
    return Track(path.name, out["all"]["penultimate"], out["all"]["tags"], out["copy"]["penultimate"],
                 out["copy"]["tags"], out["query"]["penultimate"], out["query"]["tags"],
                 (middle - lead, middle - lead + QUERY_SECONDS), old)


def _save(path: Path, t: Track) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, pen=t.pen, tags=t.tags, copy_pen=t.copy_pen, copy_tags=t.copy_tags, query_pen=t.query_pen,
             query_tags=t.query_tags, query_window=np.array(t.query_window),
             **{f"desc_{k}": v for k, v in t.descriptors.items()})
    os.replace(tmp, path)


def _load(path: Path, name: str) -> Track:
    with np.load(path) as z:
        return Track(name, z["pen"], z["tags"], z["copy_pen"], z["copy_tags"], z["query_pen"], z["query_tags"],
                     tuple(z["query_window"]), {k[5:]: z[k] for k in z.files if k.startswith("desc_")})


def library_tracks(library: Path, cache: Path, models_dir: Path, old_segments: int) -> list[Track]:
    from core.frontend import load_frontend
    from core.training.genre_data import frontend_digest

    cache = cache / f"{frontend_digest(models_dir)}-{old_segments}"
    cache.mkdir(parents=True, exist_ok=True)
    network = load_frontend(models_dir)
    tracks = []
    for i, path in enumerate(sorted(p for p in library.iterdir() if p.suffix.lower() in audio.AUDIO_EXTENSIONS)):
        key = hashlib.sha1(f"{path.name}|{path.stat().st_size}".encode()).hexdigest()[:10]
        file = cache / f"{key}.npz"
        if not file.is_file():
            _save(file, _analyse_track(path, network, old_segments))
            log.info("[%d] %s analysed", i + 1, path.name)
        tracks.append(_load(file, path.name))
    return tracks


Pool = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(segments, 200) penultimate and (segments, 50) tags -> one track vector."""


def pooling_variants(stats: tuple[np.ndarray, np.ndarray],
                     other_stats: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Pool]:
    mean, std = stats

    def z(p: np.ndarray) -> np.ndarray:
        return (p - mean) / std

    variants: dict[str, Pool] = {
        "mean": lambda p, t: embedding.unit(p.mean(axis=0)),
        "mean of standardised": lambda p, t: embedding.unit(z(p).mean(axis=0)),
        "mean + std of standardised": lambda p, t: embedding.unit(
            np.concatenate([z(p).mean(axis=0), 0.5 * z(p).std(axis=0)])),
        "max of standardised": lambda p, t: embedding.unit(z(p).max(axis=0)),
        "mean of standardised + tags": lambda p, t: embedding.unit(
            np.concatenate([z(p).mean(axis=0) / np.sqrt(p.shape[1]), np.log(t + 1e-4).mean(axis=0) / 10])),
    }
    if other_stats is not None:
        m2, s2 = other_stats
        variants["mean, standardised by --stats"] = lambda p, t: embedding.unit(((p - m2) / s2).mean(axis=0))
    return variants


def entries_and_queries(tracks: list[Track], pool: Pool, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """query kind -> (entry vectors, query vectors), tracks in order."""
    entries, other, queries, copies = [], [], [], []
    for t in tracks:
        keep = spread(len(t.pen), n)
        entries.append(pool(t.pen[keep], t.tags[keep]))
        starts = np.arange(len(t.pen)) * SEGMENT_SECONDS
        a, b = t.query_window
        outside = np.flatnonzero((starts + SEGMENT_SECONDS <= a) | (starts >= b))
        rest = outside[spread(len(outside), n)] if len(outside) else keep
        other.append(pool(t.pen[rest], t.tags[rest]))
        queries.append(pool(t.query_pen, t.query_tags))
        ckeep = spread(len(t.copy_pen), n)
        copies.append(pool(t.copy_pen[ckeep], t.copy_tags[ckeep]))
    e, q = np.stack(entries), np.stack(queries)
    return {"middle-mp3": (e, q), "other-part": (np.stack(other), q), "reencoded": (e, np.stack(copies))}


def ranks(entries: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """0-based rank of each query's own entry under cosine similarity (rows are unit vectors)."""
    sims = queries @ entries.T
    return (sims > np.diag(sims)[:, None]).sum(axis=1)


def figures(pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, float]]:
    out = {}
    for query, (e, q) in pairs.items():
        r = ranks(e, q)
        out[query] = {"hit1": int((r < 1).sum()), "hit5": int((r < 5).sum()), "mrr": float(np.mean(1 / (1 + r)))}
    return out


def descriptor_figures(tracks: list[Track]) -> dict[str, dict[str, float]]:
    def vec(d: np.ndarray) -> np.ndarray:
        return embedding.descriptor_embedding(SegmentFeatures(None, starts=np.arange(len(d)), descriptors=d))

    e = np.stack([vec(t.descriptors["entry"]) for t in tracks])
    q = np.stack([vec(t.descriptors["query"]) for t in tracks])
    c = np.stack([vec(t.descriptors["copy"]) for t in tracks])
    return figures({"middle-mp3": (e, q), "reencoded": (e, c)})


def library_stats(tracks: list[Track]) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([t.pen for t in tracks]).astype(np.float64)
    return x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)


def _row(name: str, result: dict[str, dict[str, float]], n_tracks: int) -> str:
    cells = []
    for query in QUERIES:
        f = result.get(query)
        cells.append(f"{f['hit1']:>3}/{n_tracks} {f['hit5']:>3}/{n_tracks} {f['mrr']:.3f}" if f else " " * 20)
    return f"{name:<34} " + "   ".join(cells)


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(env_file=None)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "library")
    parser.add_argument("--segments", type=int, default=None, help="segments per library entry")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--stats", type=Path, default=None,
                        help="an .npz of embedding mean/std from other music, tried as one more variant")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.library.is_dir():
        print(f"library not found: {args.library}", file=sys.stderr)
        return 2
    n = args.segments or getattr(settings, "library_segments", settings.max_segments)
    tracks = library_tracks(args.library, args.cache_dir, settings.models_dir, settings.max_segments)
    k = len(tracks)
    print(f"{k} tracks; entries of {n} segments spread over each track; query: the middle {QUERY_SECONDS:g} s "
          f"through {REENCODE_BITRATE}b/s mp3; exact cosine search; hit@1, hit@5 (of {k}) and MRR\n")
    print(f"{'kind':<34} {'middle-mp3':<20}   {'other-part':<20}   {'reencoded':<20}")
    print(_row(f"descriptor-v1 ({settings.max_segments} segments)", descriptor_figures(tracks), k))
    other = None
    if args.stats:
        with np.load(args.stats) as z:
            other = (z["mean"], z["std"])
    variants = pooling_variants(library_stats(tracks), other)
    for name, pool in variants.items():
        print(_row(f"front-end: {name}", figures(entries_and_queries(tracks, pool, n)), k))
    shipped = embedding.embedder()
    print(f"\nshipped kind {shipped.kind}: by segments per library entry")
    for m, result in curve(tracks).items():
        print(_row(f"  {m:>2} segments", result, k))
    return 0


def shipped_pool(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The shipped kind's vector, from per-segment outputs as the library would compute them."""
    return embedding.embed(SegmentFeatures(None, starts=np.arange(len(p)) * SEGMENT_SECONDS, embeddings=p, tags=t))


def curve(tracks: list[Track], points: tuple[int, ...] = CURVE) -> dict[int, dict[str, dict[str, float]]]:
    """Segments per library entry -> figures of the shipped kind (bench_reindex prints it beside speed)."""
    return {m: figures(entries_and_queries(tracks, shipped_pool, m)) for m in points}


if __name__ == "__main__":
    sys.exit(main())
