"""Track embeddings: one fixed-length, L2-normalised vector per track, compared by cosine similarity.

Kinds plug in by name through `EMBEDDERS`; the index records the kind it was built with and is rebuilt
when it differs from `EMBEDDING_KIND`. Bump a kind's version on any change to its recipe or statistics.

"musicnn-v1" (the default) is the mean over the analysed segments of the front-end's 200-d `penultimate`
embedding (core.frontend), L2-normalised: the front-end pass that genre and mood read serves similarity too.
Chosen with benchmarks/bench_neighbours.py on the shared library (68 tracks, entries of 20 segments spread
over each whole track, the middle 30 s through a 64 kb/s mp3 as the query): hit@1 66/68 and hit@5 67/68,
61/68 and 65/68 with the entry's segments that overlap the query left out, against 62/68 and 65/68 for
descriptor-v1 on the first. Standardising the dimensions first (with the library's statistics), adding their
spread or the tag logits, or max-pooling did no better (max-pooling worse: 60/68, 49/68); the segments'
positions over the track matter more than the pooling.

"descriptor-v1" (the previous default, kept for that side-by-side comparison) summarises a track's segments as a whole-clip statistic, the way the GTZAN
30-s table describes a track (mean of the segment means; pooled variance = mean of the segment variances +
variance of the segment means), standardised with statistics of that table's training rows
(models/embedding_descriptor_stats.json). Measured with benchmarks/bench_neighbours.py, it keeps:
- the spectral envelope as a *band-limited* cepstrum: the MFCCs turned back into their smoothed log-mel
  curve, cut to the mel bands below ~5 kHz and re-transformed. A low-bitrate codec removes the top of the
  spectrum; in ordinary MFCCs that drop moves every coefficient (32 kb/s mp3 copies of library tracks
  moved MFCC 4-7 means by 2-4x the spread between tracks, and only 74 % of copies found their own track
  first); with the cut, every copy did;
- the log variances of the MFCCs over time (texture, dynamics), at half weight;
- chroma and spectral shape (centroid, bandwidth, roll-off, zero-crossing rate), mean and log variance.
It leaves out what measures the recording more than the music: loudness (RMS, the 0th cepstral
coefficient), the harmonic/percussive waveform statistics (their variances scale with gain, their means
are noise around 0) and the per-segment tempo (unstable over 3 s). So this kind needs neither HPSS nor the
beat tracker: of the descriptors it reads only chroma, spectral shape, zero-crossing rate and MFCCs.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.config import DEFAULT_MODELS_DIR
from core.constants import N_MFCC
from core.features import DESCRIPTOR_NAMES, SegmentFeatures
from core.frontend import EMBEDDING_DIM as FRONTEND_DIM

log = logging.getLogger(__name__)

STATS_FILE = DEFAULT_MODELS_DIR / "embedding_descriptor_stats.json"
N_MELS = 128
"""Mel bands under the MFCCs (librosa's default, as core.features computes them)."""

SHAPE_COLUMNS: tuple[str, ...] = tuple(
    f"{name}_{stat}"
    for name in ("chroma_stft", "spectral_centroid", "spectral_bandwidth", "rolloff", "zero_crossing_rate")
    for stat in ("mean", "var")
)
MFCC_MEANS = tuple(f"mfcc{i}_mean" for i in range(1, N_MFCC + 1))
MFCC_VARS = tuple(f"mfcc{i}_var" for i in range(1, N_MFCC + 1))
_COLUMN = {name: i for i, name in enumerate(DESCRIPTOR_NAMES)}


@dataclass(frozen=True)
class DescriptorRecipe:
    """How a descriptor embedding is put together; the default instance is what descriptor-v1 ships.

    `kept_mel_bands` of N_MELS (128 = no band limit): 100 bands reach ~5 kHz, clear of a 32 kb/s mp3's
    ~8 kHz low-pass by more than the smoothing of 20 MFCCs spreads it (about 6 bands).
    `cepstral_coefficients` of the band-limited cepstrum, its 0th (loudness) dropped: 16 = 20 x 100/128, as
    the smoothed curve holds no finer detail over fewer bands.
    `variance_weight` scales the MFCC log variances, which differ most between two excerpts of one track
    (at full weight, hit@1 across excerpts fell from 0.765 to 0.706); `shape_weight` the chroma and
    spectral-shape block."""

    kept_mel_bands: int = 100
    cepstral_coefficients: int = 16
    variance_weight: float = 0.5
    shape_weight: float = 1.0

    @property
    def dim(self) -> int:
        return self.cepstral_coefficients - 1 + len(MFCC_VARS) + len(SHAPE_COLUMNS)


DESCRIPTOR_RECIPE = DescriptorRecipe()


@dataclass(frozen=True)
class DescriptorStats:
    """Standardisation statistics from the GTZAN 30-s training rows: per column mean/std of the value and
    of its log, and the mean vector and covariance of the 20 MFCC means (any linear map of them, such as
    the band-limited cepstrum, is standardised exactly from those)."""

    mean: np.ndarray
    std: np.ndarray
    log_mean: np.ndarray
    log_std: np.ndarray
    mfcc_mean: np.ndarray
    mfcc_cov: np.ndarray


@dataclass(frozen=True)
class Embedder:
    """One embedding kind: `embed(features)` gives a unit float32 vector of length `dim`.

    `very_close` and `close` are cosine similarities, calibrated with benchmarks/bench_neighbours.py on
    the real library, that explain results: for descriptor-v1, 63 % of pairs of excerpts of one track
    reach 0.80 and 0.1 % of pairs of different tracks do; 0.55 is reached by the nearest 9 % of pairs of
    different tracks (a track's nearest other track has a median cosine of 0.70)."""

    kind: str
    dim: int
    embed: Callable[[SegmentFeatures], np.ndarray]
    very_close: float
    close: float


def track_statistics(descriptors: np.ndarray) -> np.ndarray:
    """(57,) whole-clip statistics from (n, 57) per-segment descriptors: means are averaged and variances
    pooled, which is exact for equally long segments, so a clip is described as the 30-s table does."""
    d = np.atleast_2d(np.asarray(descriptors, dtype=np.float64))
    pooled = d.mean(axis=0)
    for i, name in enumerate(DESCRIPTOR_NAMES):
        if name.endswith("_var"):
            pooled[i] = d[:, i].mean() + d[:, i - 1].var()
    return pooled


@lru_cache(maxsize=8)
def band_limited_cepstrum_map(kept_bands: int, coefficients: int) -> np.ndarray:
    """(N_MFCC, coefficients) matrix taking MFCCs to the cepstrum of their smoothed log-mel curve over the
    lowest `kept_bands` mel bands (orthonormal DCT-II both ways, as librosa's MFCCs)."""
    import scipy.fft

    to_bands = scipy.fft.idct(np.eye(N_MFCC, N_MELS), type=2, norm="ortho", axis=1)[:, :kept_bands]
    to_cepstrum = scipy.fft.dct(np.eye(kept_bands), type=2, norm="ortho", axis=1)[:, :coefficients]
    matrix = to_bands @ to_cepstrum
    matrix.flags.writeable = False
    return matrix


def fit_descriptor_stats(table: np.ndarray) -> dict[str, object]:
    """The shipped statistics, from (rows, 57) track descriptors in DESCRIPTOR_NAMES order (population
    moments, as the standardisation uses them). Variances also get the moments of their log: they span
    orders of magnitude, and are standardised in log space."""
    table = np.asarray(table, dtype=np.float64)
    mfcc = table[:, [_COLUMN[c] for c in MFCC_MEANS]]

    def moments(i: int, name: str) -> dict[str, float]:
        out = {"mean": float(table[:, i].mean()), "std": float(table[:, i].std())}
        if name.endswith("_var"):
            logged = np.log(table[:, i])
            out |= {"log_mean": float(logged.mean()), "log_std": float(logged.std())}
        return out

    return {
        "rows": int(table.shape[0]),
        "columns": {name: moments(i, name) for i, name in enumerate(DESCRIPTOR_NAMES)},
        "mfcc_mean": mfcc.mean(axis=0).tolist(),
        "mfcc_cov": np.cov(mfcc, rowvar=False, ddof=0).tolist(),
    }


@lru_cache(maxsize=4)
def descriptor_stats(path: Path = STATS_FILE) -> DescriptorStats:
    raw = json.loads(Path(path).read_text())
    cols = raw["columns"]

    def column(key: str) -> np.ndarray:
        """NaN where a column has no such statistic (log moments exist for variances only)."""
        return np.array([cols[name].get(key, np.nan) for name in DESCRIPTOR_NAMES], dtype=np.float64)

    return DescriptorStats(mean=column("mean"), std=column("std"), log_mean=column("log_mean"),
                           log_std=column("log_std"),
                           mfcc_mean=np.asarray(raw["mfcc_mean"], dtype=np.float64),
                           mfcc_cov=np.asarray(raw["mfcc_cov"], dtype=np.float64))


def unit(vector: np.ndarray) -> np.ndarray:
    """float32, L2-normalised (a zero vector stays zero rather than becoming NaN)."""
    norm = float(np.linalg.norm(vector))
    return (np.asarray(vector, dtype=np.float64) / max(norm, 1e-12)).astype(np.float32)


def standardise(track: np.ndarray, names: tuple[str, ...], stats: DescriptorStats) -> np.ndarray:
    """The named columns of (57,) track statistics in training-set standard deviations; variances in log
    space, where their spread across tracks is close to normal."""
    idx = [_COLUMN[n] for n in names]
    logged = np.array([n.endswith("_var") for n in names])
    values = np.where(logged, np.log(np.maximum(track[idx], np.finfo(np.float64).tiny)), track[idx])
    centre = np.where(logged, stats.log_mean[idx], stats.mean[idx])
    return (values - centre) / np.where(logged, stats.log_std[idx], stats.std[idx])


def descriptor_embedding(features: SegmentFeatures, recipe: DescriptorRecipe = DESCRIPTOR_RECIPE,
                         stats: DescriptorStats | None = None) -> np.ndarray:
    """The descriptor embedding of one clip, (recipe.dim,) float32, unit length (see the module doc)."""
    stats = descriptor_stats() if stats is None else stats
    track = track_statistics(features.descriptors)

    cepstrum_map = band_limited_cepstrum_map(recipe.kept_mel_bands, recipe.cepstral_coefficients)
    mfcc_means = track[[_COLUMN[c] for c in MFCC_MEANS]]
    centre = stats.mfcc_mean @ cepstrum_map
    spread = np.sqrt(np.einsum("ij,ik,kj->j", cepstrum_map, stats.mfcc_cov, cepstrum_map))
    cepstrum = ((mfcc_means @ cepstrum_map - centre) / spread)[1:]

    return unit(np.concatenate([
        cepstrum,
        recipe.variance_weight * standardise(track, MFCC_VARS, stats),
        recipe.shape_weight * standardise(track, SHAPE_COLUMNS, stats),
    ]))


def frontend_embedding(features: SegmentFeatures) -> np.ndarray:
    """musicnn-v1: the L2-normalised mean of the segments' front-end embeddings, (200,) float32."""
    return unit(np.asarray(features.embeddings, np.float64).mean(axis=0))


EMBEDDING_KIND = "musicnn-v1"
EMBEDDERS: dict[str, Embedder] = {
    EMBEDDING_KIND: Embedder(kind=EMBEDDING_KIND, dim=FRONTEND_DIM, embed=frontend_embedding,
                             very_close=0.90, close=0.80),
    "descriptor-v1": Embedder(kind="descriptor-v1", dim=DESCRIPTOR_RECIPE.dim, embed=descriptor_embedding,
                              very_close=0.80, close=0.55),
}
"""Kind -> embedder. musicnn-v1's thresholds, from bench_neighbours' library: a track's middle 30 s as mp3
against the whole track has a median cosine of 0.96 (20 segments; 0.92 with 4), 0.4 % of pairs of different
tracks reach 0.90 and 4 % reach 0.80 (a track's nearest other track: median 0.84)."""
EMBEDDING_DIM = EMBEDDERS[EMBEDDING_KIND].dim


def embedder(kind: str = EMBEDDING_KIND) -> Embedder:
    try:
        return EMBEDDERS[kind]
    except KeyError:
        raise ValueError(f"unknown embedding kind {kind!r} (known: {', '.join(sorted(EMBEDDERS))})") from None


def embed(features: SegmentFeatures, kind: str = EMBEDDING_KIND) -> np.ndarray:
    """The track vector of `kind` for a clip's features: (dim,) float32, unit length."""
    return embedder(kind).embed(features)


def read_training_table(data_dir: Path) -> np.ndarray:
    """(rows, 57) descriptors of the GTZAN 30-s table's tracks in the artist-filtered training split."""
    import csv

    split = (data_dir / "gtzan-split" / "train_filtered.txt").read_text().split()
    train = {Path(line).stem for line in split}
    with (data_dir / "gtzan-features" / "features_30_sec.csv").open(newline="") as fh:
        rows = [[float(r[name]) for name in DESCRIPTOR_NAMES] for r in csv.DictReader(fh)
                if Path(r["filename"]).stem in train]
    return np.array(rows, dtype=np.float64)


def _write_shipped_stats(data_dir: Path, out: Path) -> None:
    """Rebuild models/embedding_descriptor_stats.json from the team data (see __main__ below)."""
    table = read_training_table(data_dir)
    stats = {"source": "gtzan-features/features_30_sec.csv, rows listed in gtzan-split/train_filtered.txt",
             **fit_descriptor_stats(table)}
    out.write_text(json.dumps(stats, indent=1) + "\n")
    log.info("wrote %s from %d rows", out, len(table))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        description="Rebuild the shipped descriptor statistics: python -m core.embedding [--data DIR]")
    parser.add_argument("--data", type=Path, default=DEFAULT_MODELS_DIR.parent.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=STATS_FILE)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    _write_shipped_stats(args.data, args.out)
