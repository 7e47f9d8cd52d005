"""Neighbour quality on a real library: does an excerpt find its own track, is it recognised as that
recording, and do neighbours share a genre?

The library entry of each track (../shared/data/library by default, or the Debian soundtracks of
benchmarks/fetch_devlib.py: `--library ~/.cache/cratedigger/devlib/library --no-copies`) is the track as
the library analyses it: N segments spread over the whole (trimmed) track. Queries:
  middle-mp3    the middle 30 s of the track through a 64 kb/s mp3 and back, cut as /similar cuts a query
                (overlapping windows every --query-hop seconds; 0: 3-s segments end to end): the team's check;
  other-part    the same query against entries made without the segments that overlap it, so the query
                must be recognised from other parts of the track;
  reencoded     a 64 kb/s mp3 copy of the whole track, analysed as an upload (not with --no-copies).
Each query scores hit@1, hit@5 and the mean reciprocal rank of its own track among all entries, by exact
search (this measures the scoring, not an index), for: one mean vector per track (the pooling variants at
--segments; descriptor-v1 with --descriptors) and segment-level scores (each query segment's best match in
a track, reduced over the query), over N in --points. Then the same-recording rule (the thresholds no pair
of different tracks reaches, and what the shipped ones recognise), the quantiles of other tracks' scores
(the labels' thresholds), and the genre of the 5 nearest neighbours on gtzan-audio's full 30-s tracks.

Front-end outputs of every segment of every track (and of the copies and queries) are computed once and
cached outside the repository (~/.cache/cratedigger/bench-neighbours), so a rerun only scores.

    .venv/bin/python benchmarks/bench_neighbours.py [--library DIR] [--no-copies] [--points 6,10,24]
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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from core import audio, embedding, segment_match, similar  # noqa: E402
from core.similar import SAME_CONTRAST  # noqa: E402
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
UPLOAD_SEGMENTS = 40
"""Segments an upload is analysed on (CRATEDIGGER_MAX_SEGMENTS' default)."""
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


def _analyse_track(path: Path, network, old_segments: int | None, copies: bool) -> Track:
    from core.features import extract

    y = audio.decode(path, max_seconds=MAX_TRACK_SECONDS)
    trimmed = audio.trim_silence(y, name=path.name)
    import librosa

    _, kept = librosa.effects.trim(y, top_db=SILENCE_TOP_DB, frame_length=2048, hop_length=512)
    lead = kept[0] / SAMPLE_RATE  # the query's window is given in the trimmed track's time
    every = audio.segment(trimmed, max_segments=10**6)
    copy = (audio.segment(audio.trim_silence(mp3_round_trip(y), name=path.name), max_segments=10**6) if copies
            else audio.Segments(np.zeros((0, SEGMENT_SAMPLES), np.float32), np.zeros(0), 0.0))
    middle = max(0.0, y.size / SAMPLE_RATE / 2 - QUERY_SECONDS / 2)
    clip = y[int(middle * SAMPLE_RATE):int((middle + QUERY_SECONDS) * SAMPLE_RATE)]
    query = audio.segment(audio.trim_silence(mp3_round_trip(clip), name=path.name), max_segments=40)
    out = {k: network(np.zeros((0, 1, 1), np.float32)) if not len(s) else network.embed_segments(s.audio)
           for k, s in (("all", every), ("copy", copy), ("query", query))}
    old = {} if old_segments is None else {
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


def library_tracks(library: Path, cache: Path, models_dir: Path, old_segments: int | None = None,
                   copies: bool = True) -> list[Track]:
    """Every track's cached outputs, computing the missing ones; descriptor-v1's descriptors (HPSS and a
    tempogram per segment: most of the cost) only when `old_segments` says how many segments it reads, the
    re-encoded copy (half the rest) only with `copies`."""
    from core.frontend import load_frontend
    from core.training.genre_data import frontend_digest

    cache = cache / f"{frontend_digest(models_dir)}-{old_segments or 'frontend'}{'' if copies else '-nocopy'}"
    cache.mkdir(parents=True, exist_ok=True)
    network = load_frontend(models_dir)
    tracks = []
    for i, path in enumerate(sorted(p for p in library.iterdir() if p.suffix.lower() in audio.AUDIO_EXTENSIONS)):
        key = hashlib.sha1(f"{path.name}|{path.stat().st_size}".encode()).hexdigest()[:10]
        file = cache / f"{key}.npz"
        if not file.is_file():
            _save(file, _analyse_track(path, network, old_segments, copies))
            log.info("[%d] %s analysed", i + 1, path.name)
        tracks.append(_load(file, path.name))
    return tracks


def dense_queries(library: Path, cache: Path, models_dir: Path, hop: float) -> dict[str, np.ndarray]:
    """Per track name: the front-end embeddings of the middle-mp3 query cut into 3-s windows every `hop`
    seconds (overlapping), as core.analysis cuts a /similar query; cached beside the other outputs."""
    from core.frontend import load_frontend
    from core.training.genre_data import frontend_digest

    folder = cache / f"{frontend_digest(models_dir)}-dense-{hop:g}"
    folder.mkdir(parents=True, exist_ok=True)
    network = None
    out = {}
    for path in sorted(p for p in library.iterdir() if p.suffix.lower() in audio.AUDIO_EXTENSIONS):
        key = hashlib.sha1(f"{path.name}|{path.stat().st_size}".encode()).hexdigest()[:10]
        file = folder / f"{key}.npy"
        if not file.is_file():
            network = network or load_frontend(models_dir)
            y = audio.decode(path, max_seconds=MAX_TRACK_SECONDS)
            middle = max(0.0, y.size / SAMPLE_RATE / 2 - QUERY_SECONDS / 2)
            clip = y[int(middle * SAMPLE_RATE):int((middle + QUERY_SECONDS) * SAMPLE_RATE)]
            query = audio.overlapping(audio.trim_silence(mp3_round_trip(clip), name=path.name), hop=hop,
                                      max_segments=UPLOAD_SEGMENTS)
            tmp = file.with_suffix(".tmp.npy")
            np.save(tmp, network.embed_segments(query.audio)["penultimate"])
            os.replace(tmp, file)
        out[path.name] = np.load(file)
    return out


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
        if len(t.copy_pen):
            ckeep = spread(len(t.copy_pen), n)
            copies.append(pool(t.copy_pen[ckeep], t.copy_tags[ckeep]))
    e, q = np.stack(entries), np.stack(queries)
    pairs = {"middle-mp3": (e, q), "other-part": (np.stack(other), q)}
    return pairs | ({"reencoded": (e, np.stack(copies))} if len(copies) == len(tracks) else {})


def query_kinds(tracks: list[Track]) -> tuple[str, ...]:
    """QUERIES, less the re-encoded copy when the cache was made without copies."""
    return QUERIES if all(len(t.copy_pen) for t in tracks) else QUERIES[:2]


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
    parser.add_argument("--library", type=Path, action="append",
                        help="a library folder; repeat for several (default: ../shared/data/library); the "
                             "re-encoded copies are made for the first only")
    parser.add_argument("--segments", type=int, default=None, help="segments per library entry")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--gtzan", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "gtzan-audio",
                        help="gtzan-audio (full30_22k tracks): the genre of neighbours, when present")
    parser.add_argument("--query-hop", type=float, default=segment_match.QUERY_HOP,
                        help="seconds between the query's overlapping windows (0: 3-s segments end to end)")
    parser.add_argument("--no-copies", action="store_true",
                        help="skip the re-encoded whole copies (half the first run's work)")
    parser.add_argument("--points", default="6,10,24", help="segments per library entry to compare")
    parser.add_argument("--descriptors", action="store_true",
                        help="also compare descriptor-v1 (computing its descriptors costs most of the first run)")
    parser.add_argument("--stats", type=Path, default=None,
                        help="an .npz of embedding mean/std from other music, tried as one more variant")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.library = args.library or [REPO_ROOT.parent / "shared" / "data" / "library"]
    n = args.segments or getattr(settings, "library_segments", settings.max_segments)
    points = tuple(int(p) for p in args.points.split(","))
    libraries = []
    for library in args.library:
        if not library.is_dir():
            print(f"library not found: {library}", file=sys.stderr)
            return 2
        copies = not args.no_copies and library == args.library[0]
        tracks = library_tracks(library, args.cache_dir, settings.models_dir,
                                settings.max_segments if args.descriptors else None, copies=copies)
        if args.query_hop:  # the query as /similar cuts it: overlapping windows
            dense = dense_queries(library, args.cache_dir, settings.models_dir, args.query_hop)
            tracks = [replace(t, query_pen=dense[t.name]) for t in tracks]
        print(f"\n=== {library}")
        report_library(tracks, args, n, points)
        libraries.append(tracks)
    if len(libraries) > 1:
        print("\n=== all libraries together: the same-recording rule and the labels' thresholds")
        for m in points:
            stats = [same_recording(t, m) for t in libraries]
            rule = same_rule([v["other"] for st in stats for v in st.values()],
                             [st["middle-mp3"]["own"] for st in stats])
            print(f"{m:>2} rule: averaged max-sim >= {rule[0]:.3f} and best match >= {rule[1]:.3f}; recognised "
                  + "; ".join(", ".join(f"{q} {recognised(v['own'], rule)}/{len(v['own'])}" for q, v in st.items())
                              for st in stats))
            q = np.quantile(np.concatenate([other_track_scores(t, m) for t in libraries]), LABEL_QUANTILES)
            print(f"{m:>2} averaged max-sim to other tracks, quantiles "
                  + ", ".join(f"{p:g}: {v:.3f}" for p, v in zip(LABEL_QUANTILES, q)))
    if args.gtzan.is_dir():
        pens, genres = gtzan_outputs(args.gtzan, args.cache_dir, settings.models_dir)
        print(f"\ngenre of the 5 nearest other tracks, {len(pens)} GTZAN full30_22k tracks as the library")
        for name, shares in genre_of_neighbours(pens, genres).items():
            print(f"  {name:<18} " + ", ".join(f"{g} {v:.3f}" for g, v in shares.items()))
    return 0


def report_library(tracks: list[Track], args: argparse.Namespace, n: int, points: tuple[int, ...]) -> None:
    """Every figure of one library (see the module doc)."""
    settings = load_settings(env_file=None)
    k = len(tracks)
    print(f"{k} tracks; entries of {n} segments spread over each track; query: the middle {QUERY_SECONDS:g} s "
          f"through {REENCODE_BITRATE}b/s mp3; exact search; hit@1, hit@5 (of {k}) and MRR\n")
    print(f"{'kind':<34} {'middle-mp3':<20}   {'other-part':<20}   {'reencoded':<20}")
    if args.descriptors:
        print(_row(f"descriptor-v1 ({settings.max_segments} segments)", descriptor_figures(tracks), k))
    other = None
    if args.stats:
        with np.load(args.stats) as z:
            other = (z["mean"], z["std"])
    for name, pool in pooling_variants(library_stats(tracks), other).items():
        print(_row(f"front-end: {name}", figures(entries_and_queries(tracks, pool, n)), k))
    print("\nby segments per library entry: one mean vector per track against segment-level scores")
    for m in points:
        print(_row(f"{m:>2} mean vector", figures(entries_and_queries(tracks, shipped_pool, m)), k))
        for name, score in SEGMENT_SCORES.items():
            print(_row(f"{m:>2} {name}", segment_figures(tracks, m, score), k))
    print("\nsame recording: the (averaged max-sim, best window) thresholds no pair of different tracks here "
          "reaches that recognise the most excerpts, and what the shipped rule does")
    for m in points:
        stats = same_recording(tracks, m)
        rule = same_rule([v["other"] for v in stats.values()], [stats["middle-mp3"]["own"]])
        print(f"{m:>2} rule: averaged max-sim >= {rule[0]:.3f} and best match >= {rule[1]:.3f}; recognised "
              + ", ".join(f"{q} {recognised(v['own'], rule)}/{k}" for q, v in stats.items()))
        print(f"{m:>2} shipped rule ({similar.SAME_RECORDING}, {similar.SAME_BEST}): {same_rule_now(stats)}")
    for m in points:
        q = np.quantile(other_track_scores(tracks, m), LABEL_QUANTILES)
        print(f"{m:>2} averaged max-sim to other tracks, quantiles "
              + ", ".join(f"{p:g}: {v:.3f}" for p, v in zip(LABEL_QUANTILES, q)))


SEGMENT_SCORES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "averaged max-sim": lambda best: best.mean(axis=0),
    "max-sim, best half of the query": lambda best: np.sort(best, axis=0)[best.shape[0] // 2:].mean(axis=0),
    "max-sim, median over the query": lambda best: np.median(best, axis=0),
}
"""(m, tracks) best match of each query segment per track -> a score per track."""


def _entry_rows(tracks: list[Track], n: int, query: str) -> list[np.ndarray]:
    """Each track's library segments (unit rows): n spread over the track, or for other-part n spread over
    the segments that do not overlap the query's window."""
    rows = []
    for t in tracks:
        keep = spread(len(t.pen), n)
        if query == "other-part":
            starts = np.arange(len(t.pen)) * SEGMENT_SECONDS
            a, b = t.query_window
            outside = np.flatnonzero((starts + SEGMENT_SECONDS <= a) | (starts >= b))
            keep = outside[spread(len(outside), n)] if len(outside) else keep
        rows.append(segment_match.unit_rows(t.pen[keep]))
    return rows


def _query_rows(t: Track, query: str) -> np.ndarray:
    if query == "reencoded":  # the whole copy sent as an upload: the upload limit's segments
        return segment_match.unit_rows(t.copy_pen[spread(len(t.copy_pen), UPLOAD_SEGMENTS)])
    return segment_match.unit_rows(t.query_pen)


def best_matches(tracks: list[Track], n: int, query: str) -> list[np.ndarray]:
    """Per query track: (m, tracks) cosine of each of its segments to its best match in each track."""
    rows = _entry_rows(tracks, n, query)
    everything = np.concatenate(rows)
    bounds = np.cumsum([0] + [len(r) for r in rows])[:-1]
    return [np.maximum.reduceat(_query_rows(t, query) @ everything.T, bounds, axis=1) for t in tracks]


def segment_figures(tracks: list[Track], n: int, score: Callable[[np.ndarray], np.ndarray]
                    ) -> dict[str, dict[str, float]]:
    """hit@1, hit@5 and MRR of each query kind when tracks are scored from segment matches."""
    out = {}
    for query in query_kinds(tracks):
        sims = np.stack([score(b) for b in best_matches(tracks, n, query)])
        r = (sims > np.diag(sims)[:, None]).sum(axis=1)
        out[query] = {"hit1": int((r < 1).sum()), "hit5": int((r < 5).sum()), "mrr": float(np.mean(1 / (1 + r)))}
    return out


def same_recording(tracks: list[Track], n: int) -> dict[str, dict[str, np.ndarray]]:
    """For the same-recording rule: per query kind, (averaged max-sim, best single segment match) of each
    query's own track, and of every other track."""
    out = {}
    for query in query_kinds(tracks):
        own, other = [], []
        for i, best in enumerate(best_matches(tracks, n, query)):
            pairs = np.stack([best.mean(axis=0), best.max(axis=0)], axis=1)
            own.append(pairs[i])
            other.append(np.delete(pairs, i, axis=0))
        out[query] = {"own": np.stack(own), "other": np.concatenate(other)}
    return out


def same_rule(others: list[np.ndarray], owns: list[np.ndarray], margin: float = 0.01) -> tuple[float, float]:
    """(averaged max-sim, best match) thresholds that no pair of different tracks in `others` reaches on
    both (among pairs whose best match stands out from their average by core.similar.SAME_CONTRAST, as the
    rule requires), with `margin` to spare, recognising the most of `owns` (each query's own track): for
    each averaged max-sim threshold, the best-match threshold just clearing every such pair within `margin`
    below it."""
    pairs, own = np.concatenate(others), np.concatenate(owns)
    pairs = pairs[pairs[:, 1] - pairs[:, 0] >= SAME_CONTRAST]
    rules = []
    for t_mean in np.arange(0.80, 1.0 + margin, 0.005):
        above = pairs[pairs[:, 0] >= t_mean - margin]
        rules.append((float(t_mean), float(above[:, 1].max() + margin) if len(above) else 0.0))
    return max(rules, key=lambda rule: (recognised(own, rule), rule[0]))


def recognised(own: np.ndarray, rule: tuple[float, float]) -> int:
    """How many (averaged max-sim, best match) pairs the same-recording rule accepts."""
    return int(((own[:, 0] >= rule[0]) & (own[:, 1] >= rule[1]) & (own[:, 1] - own[:, 0] >= SAME_CONTRAST)).sum())


def same_rule_now(stats: dict[str, dict[str, np.ndarray]]) -> str:
    """What the shipped thresholds (core.similar) recognise and wrongly accept, per query kind."""
    rule = (similar.SAME_RECORDING, similar.SAME_BEST)
    return ", ".join(f"{q}: recognised {recognised(v['own'], rule)}/{len(v['own'])}, other tracks called the "
                     f"same {recognised(v['other'], rule)}" for q, v in stats.items())


def gtzan_outputs(gtzan: Path, cache: Path, models_dir: Path) -> tuple[list[np.ndarray], list[str]]:
    """Per-segment embeddings (each 30-s GTZAN track analysed as an upload and as a library track are the
    same 10 segments) and genres of gtzan-audio's full30_22k tracks, cached."""
    import csv

    from core.frontend import load_frontend
    from core.training.genre_data import frontend_digest

    with (gtzan / "MANIFEST.tsv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["kind"] == "full30_22k"]
    file = cache / f"gtzan-full30-{frontend_digest(models_dir)}-{len(rows)}.npz"
    if not file.is_file():
        network = load_frontend(models_dir)
        pens = [network.embed_segments(audio.load_segments(gtzan / r["file"], max_seconds=MAX_TRACK_SECONDS,
                                                           max_segments=UPLOAD_SEGMENTS).audio)["penultimate"]
                for r in rows]
        file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(file, pen=np.concatenate(pens), counts=[len(p) for p in pens], genres=[r["genre"] for r in rows])
    with np.load(file) as z:
        bounds = np.cumsum(z["counts"])[:-1]
        return np.split(z["pen"], bounds), [str(g) for g in z["genres"]]


def genre_of_neighbours(pens: list[np.ndarray], genres: list[str], k: int = 5) -> dict[str, dict[str, float]]:
    """Share of each track's k nearest other tracks with its genre, per genre and overall, for the mean
    vector and for the averaged max-sim."""
    rows = [segment_match.unit_rows(p) for p in pens]
    means = np.stack([embedding.unit(p.mean(axis=0)) for p in pens])
    everything = np.concatenate(rows)
    bounds = np.cumsum([0] + [len(r) for r in rows])[:-1]
    scores = {"mean vector": means @ means.T,
              "averaged max-sim": np.stack([np.maximum.reduceat(r @ everything.T, bounds, axis=1).mean(axis=0)
                                            for r in rows])}
    labels = np.asarray(genres)
    out = {}
    for name, sims in scores.items():
        np.fill_diagonal(sims, -np.inf)
        nearest = np.argsort(-sims, axis=1)[:, :k]
        same = (labels[nearest] == labels[:, None]).mean(axis=1)
        out[name] = {"all": float(same.mean())} | {g: float(same[labels == g].mean()) for g in sorted(set(genres))}
    return out


LABEL_QUANTILES = (0.5, 0.8, 0.95, 0.99)


def other_track_scores(tracks: list[Track], n: int) -> np.ndarray:
    """Averaged max-sim of every middle-mp3 query to every track that is not its own: what "alike" must
    stand out from (the labels' thresholds are quantiles of it)."""
    out = []
    for i, best in enumerate(best_matches(tracks, n, "middle-mp3")):
        mean = best.mean(axis=0)
        out.append(np.delete(mean, i))
    return np.concatenate(out)


def shipped_pool(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The shipped kind's vector, from per-segment outputs as the library would compute them."""
    return embedding.embed(SegmentFeatures(None, starts=np.arange(len(p)) * SEGMENT_SECONDS, embeddings=p, tags=t))


def curve(tracks: list[Track], points: tuple[int, ...] = CURVE) -> dict[int, dict[str, dict[str, float]]]:
    """Segments per library entry -> figures of the shipped scoring (averaged max-sim of the query's
    segments; bench_reindex prints it beside speed)."""
    return {m: segment_figures(tracks, m, SEGMENT_SCORES["averaged max-sim"]) for m in points}


if __name__ == "__main__":
    sys.exit(main())
