"""Synthetic segment embeddings shaped like real ones, to measure the segment-level index at sizes no
library here reaches (bench_ann --segments --like-tracks).

Random unit vectors are the worst case for an ANN index; real segment embeddings are anisotropic (two
segments of unrelated tracks still have cosine ~0.4) and grouped by track (two segments of one track
~0.75). A two-level Gaussian model fitted to real per-segment `penultimate` embeddings keeps both:

- a track's centre is drawn from a Gaussian mixture (tied covariance: a few hundred real tracks cannot
  support one full 200-d covariance per component) fitted to the real tracks' mean vectors;
- each of its segments is that centre plus a residual drawn from the pooled within-track covariance of
  the real segments (segment minus its track's mean), scaled by a spread drawn from the real tracks' own
  spreads (some tracks are one texture throughout, others change a lot); then unit length.

A query is fresh segments of a library track drawn the same way: sections of the track that are not in
the index, which is harder than a re-encoded excerpt of indexed sections (those lie closer to their match).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SECTIONS = 4
"""Sections per synthetic track (themes that recur)."""
OWN_SHARE = 0.7
"""Share (as a standard deviation) of a segment's residual that is its own, the rest its section's:
chosen so a segment's best match among 20 others of its track is near the real library's (real 0.92;
0.91 with this, 0.85 with no sections)."""


def unit(rows: np.ndarray) -> np.ndarray:
    rows /= np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows


def real_tracks(folders: list[Path]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every track's unit segment rows, and the unit rows of its excerpt query (the middle 30 s through a
    64 kb/s mp3), from bench_neighbours' cache folders (one .npz per track: `pen`, `query_pen`)."""
    tracks, queries = [], []
    for folder in folders:
        files = sorted(folder.glob("*.npz"))
        if not files:
            raise SystemExit(f"no per-track .npz files in {folder}: run benchmarks/bench_neighbours.py first")
        for file in files:
            with np.load(file) as z:
                rows, query = z["pen"].astype(np.float64), z["query_pen"].astype(np.float64)
            if rows.shape[0] >= 2:
                tracks.append(unit(rows))
                queries.append(unit(query))
    return tracks, queries


@dataclass(frozen=True)
class TrackModel:
    """The fitted two-level model: centres ~ mixture, segment = centre + spread * chol @ z."""

    mixture: object  # sklearn GaussianMixture (tied)
    chol: np.ndarray  # (d, d) Cholesky factor of the pooled within-track covariance
    spreads: np.ndarray  # the real tracks' residual RMS norms relative to the pooled one

    @property
    def dim(self) -> int:
        return self.chol.shape[0]


def fit(tracks: list[np.ndarray], seed: int) -> TrackModel:
    from sklearn.mixture import GaussianMixture

    means = np.stack([t.mean(axis=0) for t in tracks])
    residuals = np.concatenate([t - t.mean(axis=0) for t in tracks])
    spread = np.sqrt(np.array([np.mean(np.sum((t - t.mean(axis=0)) ** 2, axis=1)) for t in tracks]))
    pooled = np.sqrt(np.mean(np.sum(residuals ** 2, axis=1)))
    mixture = GaussianMixture(n_components=max(1, min(8, len(tracks) // 30)), covariance_type="tied",
                              reg_covar=1e-4, random_state=seed).fit(means)
    cov = residuals.T @ residuals / (residuals.shape[0] - len(tracks))  # around each track's own mean
    chol = np.linalg.cholesky(cov + 1e-6 * np.eye(cov.shape[0]))
    return TrackModel(mixture, chol.astype(np.float32), spread / pooled)


def sample_centres(model: TrackModel, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(centres (n, d) float32, spreads (n,)) of n synthetic tracks."""
    mix = model.mixture
    component = rng.choice(len(mix.weights_), size=n, p=mix.weights_)
    tied = np.linalg.cholesky(mix.covariances_).astype(np.float32)
    centres = rng.standard_normal((n, model.dim), np.float32) @ tied.T
    centres += mix.means_[component].astype(np.float32)
    return centres, rng.choice(model.spreads, size=n).astype(np.float32)


def segments_of(model: TrackModel, centres: np.ndarray, spreads: np.ndarray, per_track: int,
                rng: np.random.Generator, sections: np.ndarray | None = None) -> np.ndarray:
    """(len(centres) * per_track, d) unit segment rows, each track's `per_track` rows together. Music
    repeats itself (a theme returns, a loop plays on), so a track's residuals are split between the
    offset of one of its SECTIONS sections and the segment's own noise; `sections` (n, SECTIONS, d) are
    the tracks' section offsets (drawn here when not given: pass them to draw more of the same tracks)."""
    n = centres.shape[0]
    if sections is None:
        sections = section_offsets(model, n, rng)
    which = rng.integers(SECTIONS, size=(n, per_track))
    rows = rng.standard_normal((n * per_track, model.dim), np.float32) @ model.chol.T
    rows *= OWN_SHARE
    rows += sections[np.arange(n)[:, None], which].reshape(n * per_track, model.dim)
    rows *= np.repeat(spreads, per_track)[:, None]
    rows += np.repeat(centres, per_track, axis=0)
    return unit(rows)


def section_offsets(model: TrackModel, n: int, rng: np.random.Generator) -> np.ndarray:
    offsets = rng.standard_normal((n * SECTIONS, model.dim), np.float32) @ model.chol.T
    return (offsets * np.sqrt(1 - OWN_SHARE ** 2, dtype=np.float32)).reshape(n, SECTIONS, model.dim)


def like_segment_data(model: TrackModel, n_tracks: int, per_track: int, queries: int, query_segments: int,
                      seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data (n_tracks * per_track, d), queries (queries, query_segments, d), the query tracks), built in
    chunks so the whole set is never held twice or in float64."""
    rng = np.random.default_rng(seed)
    centres, spreads = sample_centres(model, n_tracks, rng)
    sections = section_offsets(model, n_tracks, rng)
    data = np.empty((n_tracks * per_track, model.dim), np.float32)
    step = 10_000
    for start in range(0, n_tracks, step):
        stop = min(start + step, n_tracks)
        data[start * per_track:stop * per_track] = segments_of(
            model, centres[start:stop], spreads[start:stop], per_track, rng, sections[start:stop])
    picked = rng.choice(n_tracks, size=queries, replace=False)
    q = segments_of(model, centres[picked], spreads[picked], query_segments, rng, sections[picked])
    return data, q.reshape(queries, query_segments, model.dim), picked


def describe(tracks: list[np.ndarray], rng: np.random.Generator, pairs: int = 4000) -> str:
    """The statistics the model should reproduce, medians over tracks: cosine of two segments of one track,
    of two segments of different tracks, and a segment's best match among the rest of its own track."""
    within = np.median([np.mean((t @ t.T)[np.triu_indices(len(t), 1)]) for t in tracks])
    rows = np.concatenate(tracks)
    i, j = rng.integers(len(rows), size=(2, pairs))
    across = np.median(np.sum(rows[i] * rows[j], axis=1))
    best = np.median([np.mean([np.max(np.delete(t, s, axis=0) @ t[s]) for s in range(len(t))])
                      for t in tracks])
    return (f"cos within a track {within:.3f}, across tracks {across:.3f}, "
            f"best other segment of its track {best:.3f}")
