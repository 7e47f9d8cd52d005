"""Neighbour quality of track embeddings on the real library: does an excerpt find its own track?

For every track of ../shared/data/library/ the library entry is EXCERPT_SECONDS starting at ENTRY_AT of the
track. Two queries per track:
  other-excerpt  a different EXCERPT_SECONDS of the same track, starting at QUERY_AT (no overlap);
  reencoded      the entry's own excerpt through a REENCODE_BITRATE mp3 and back (bundled ffmpeg).
A query scores a hit@k when its own track is among the k entries of highest cosine similarity (exact
search with numpy: this measures the embedding, not an index). Figures are printed for every registered
embedding kind and for the ablation variants below, which is how the shipped recipe was chosen.

Decoded features are cached under the temp dir, keyed by the source of core.audio and core.features, so a
rerun only embeds. Exit 1 when hit@5 on re-encoding is below SANITY_HIT5_REENCODE for a registered kind.

    .venv/bin/python benchmarks/bench_neighbours.py [--library DIR] [--cache-dir DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from core import audio, embedding, features  # noqa: E402
from core.constants import SAMPLE_RATE  # noqa: E402
from core.features import SegmentFeatures  # noqa: E402

log = logging.getLogger("bench_neighbours")

EXCERPT_SECONDS = 30.0
ENTRY_AT = 0.2
QUERY_AT = 0.6
REENCODE_BITRATE = "32k"
MAX_TRACK_SECONDS = 900.0
SANITY_HIT5_REENCODE = 0.9
"""Below this a re-encoded copy of a library track would often not find itself: the embedding is broken."""

QUERIES = ("other-excerpt", "reencoded")


def excerpt_windows(duration: float) -> tuple[float, float, float]:
    """(entry start, query start, length) in seconds; a short track gets shorter, non-overlapping excerpts."""
    length = min(EXCERPT_SECONDS, (QUERY_AT - ENTRY_AT) * duration)
    return ENTRY_AT * duration, QUERY_AT * duration, length


def cut(y: np.ndarray, start: float, length: float) -> np.ndarray:
    first = int(start * SAMPLE_RATE)
    return y[first:first + int(length * SAMPLE_RATE)]


def mp3_round_trip(y: np.ndarray, workdir: Path) -> np.ndarray:
    """Encode to a low-bitrate mp3 with the bundled ffmpeg and decode it back as the product would."""
    mp3 = workdir / "reencoded.mp3"
    cmd = [audio.ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(SAMPLE_RATE),
           "-ac", "1", "-i", "pipe:0", "-codec:a", "libmp3lame", "-b:a", REENCODE_BITRATE, str(mp3)]
    subprocess.run(cmd, input=np.ascontiguousarray(y, dtype="<f4").tobytes(), check=True, timeout=120)
    return audio.decode(mp3, max_seconds=MAX_TRACK_SECONDS)


def analyse(y: np.ndarray, name: str) -> SegmentFeatures:
    """The product's path after decoding: trim silence, cut segments, extract features."""
    return features.extract(audio.segment(audio.trim_silence(y, name=name), max_segments=40))


def _save(path: Path, f: SegmentFeatures) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, descriptors=f.descriptors, mfcc=f.mfcc, starts=f.starts, clip_seconds=f.clip_seconds)
    os.replace(tmp, path)


def _load(path: Path) -> SegmentFeatures:
    with np.load(path) as z:
        return SegmentFeatures(descriptors=z["descriptors"], mfcc=z["mfcc"], starts=z["starts"],
                               clip_seconds=float(z["clip_seconds"]))


def code_version() -> str:
    """Cached features are only valid for the analysis code that made them."""
    digest = hashlib.sha1()
    for module in (audio, features):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def library_features(library: Path, cache: Path) -> dict[str, dict[str, SegmentFeatures]]:
    """track name -> {"entry", "other-excerpt", "reencoded"} features, computed once and cached."""
    cache.mkdir(parents=True, exist_ok=True)
    tracks = sorted(p for p in library.iterdir() if p.suffix.lower() in audio.AUDIO_EXTENSIONS)
    out: dict[str, dict[str, SegmentFeatures]] = {}
    started = time.perf_counter()
    for i, path in enumerate(tracks, 1):
        files = {kind: cache / f"{path.stem}.{kind}.npz" for kind in ("entry", *QUERIES)}
        if not all(f.is_file() for f in files.values()):
            y = audio.decode(path, max_seconds=MAX_TRACK_SECONDS)
            entry_at, query_at, length = excerpt_windows(y.size / SAMPLE_RATE)
            entry = cut(y, entry_at, length)
            with tempfile.TemporaryDirectory(prefix="bench-neighbours-") as tmp:
                clips = {"entry": entry, "other-excerpt": cut(y, query_at, length),
                         "reencoded": mp3_round_trip(entry, Path(tmp))}
            for kind, clip in clips.items():
                _save(files[kind], analyse(clip, path.name))
            log.info("[%d/%d] %s analysed (%.0f s elapsed)", i, len(tracks), path.name,
                     time.perf_counter() - started)
        out[path.name] = {kind: _load(f) for kind, f in files.items()}
    return out


def ranks_of_self(entries: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """0-based rank of each query's own entry under cosine similarity (rows are L2-normalised)."""
    sims = queries @ entries.T
    own = np.diag(sims)
    return (sims > own[:, None]).sum(axis=1)


EmbedFn = Callable[[SegmentFeatures], np.ndarray]
"""Any function from a clip's features to a unit vector."""


def ablation_variants() -> dict[str, EmbedFn]:
    """Recipes tried on the way to the shipped one; each differs from it in one respect."""
    base = embedding.DESCRIPTOR_RECIPE
    stats = embedding.descriptor_stats()

    def variant(**changes: object) -> EmbedFn:
        recipe = replace(base, **changes)
        return lambda f: embedding.descriptor_embedding(f, recipe, stats)

    def all_columns(f: SegmentFeatures) -> np.ndarray:
        """Every descriptor standardised (variances in log space): loudness, HPSS and tempo included."""
        track = embedding.track_statistics(f.descriptors)
        return embedding.unit(embedding.standardise(track, features.DESCRIPTOR_NAMES, stats))

    return {
        "MFCC means instead of band-limited": variant(kept_mel_bands=128, cepstral_coefficients=20),
        "cepstrum below ~6 kHz (110 bands)": variant(kept_mel_bands=110, cepstral_coefficients=17),
        "cepstrum below ~3.5 kHz (80 bands)": variant(kept_mel_bands=80, cepstral_coefficients=13),
        "MFCC variances at full weight": variant(variance_weight=1.0),
        "no chroma / spectral shape (weight 0)": variant(shape_weight=0.0),
        "all 57 columns (+loudness, HPSS, tempo)": all_columns,
        "MFCC means, not standardised": lambda f: embedding.unit(f.mfcc.mean(axis=(0, 1))),
    }


def embed_all(data: dict[str, dict[str, SegmentFeatures]], embed: EmbedFn) -> dict[str, np.ndarray]:
    """clip kind -> (tracks, dim) vectors, tracks in sorted name order."""
    names = sorted(data)
    return {kind: np.stack([embed(data[n][kind]) for n in names]) for kind in ("entry", *QUERIES)}


def hit_rates(vectors: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """query kind -> (hit@1, hit@5)."""
    result = {}
    for query in QUERIES:
        ranks = ranks_of_self(vectors["entry"], vectors[query])
        result[query] = (float(np.mean(ranks < 1)), float(np.mean(ranks < 5)))
    return result


def similarity_profile(vectors: dict[str, np.ndarray]) -> tuple[float, float, float]:
    """(median cosine of a track's two excerpts, 90th and 99th percentile of cosines between different
    tracks' entries): what the `very_close` / `close` thresholds of an Embedder are calibrated on."""
    same = np.sum(vectors["entry"] * vectors["other-excerpt"], axis=1)
    sims = vectors["entry"] @ vectors["entry"].T
    different = sims[~np.eye(len(sims), dtype=bool)]
    return float(np.median(same)), float(np.quantile(different, 0.9)), float(np.quantile(different, 0.99))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "library")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "cratedigger-bench-neighbours")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.library.is_dir():
        print(f"library not found: {args.library}", file=sys.stderr)
        return 2

    data = library_features(args.library, args.cache_dir / code_version())
    print(f"{len(data)} tracks; entry {EXCERPT_SECONDS:g} s at {ENTRY_AT:.0%}, other excerpt at "
          f"{QUERY_AT:.0%}, re-encoding {REENCODE_BITRATE}b/s mp3; exact cosine search\n")
    print(f"{'embedding':<40} {'dim':>4}  {'excerpt hit@1':>13} {'hit@5':>6}  "
          f"{'re-enc hit@1':>12} {'hit@5':>6}")
    failed = []
    registered = [(f"{kind} (registered)", e.embed, e) for kind, e in embedding.EMBEDDERS.items()]
    variants = [(name, fn, None) for name, fn in ablation_variants().items()]
    calibration = []
    for name, embed, entry in registered + variants:
        vectors = embed_all(data, embed)
        figures = hit_rates(vectors)
        (e1, e5), (r1, r5) = figures["other-excerpt"], figures["reencoded"]
        print(f"{name:<40} {vectors['entry'].shape[1]:>4}  {e1:>13.3f} {e5:>6.3f}  {r1:>12.3f} {r5:>6.3f}")
        if entry is not None:
            calibration.append((entry, similarity_profile(vectors)))
            if r5 < SANITY_HIT5_REENCODE:
                failed.append(name)
    print()
    for entry, (same, p90, p99) in calibration:
        print(f"{entry.kind}: cosine of a track's two excerpts, median {same:.3f}; between different tracks "
              f"90th pct {p90:.3f}, 99th pct {p99:.3f} (thresholds shipped: very_close {entry.very_close}, "
              f"close {entry.close})")
    if failed:
        print(f"\nFAIL: re-encoded hit@5 below {SANITY_HIT5_REENCODE} for {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
