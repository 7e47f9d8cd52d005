"""bench_ann's library-shaped segment vectors (benchmarks/segment_like.py): the 1M figures in
models/similarity.md are only as good as the claim that the synthetic segments keep the structure of the
real ones they were fitted to. Here the "real" tracks come from a known structure and are read back through
the same cache files bench_neighbours writes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks import segment_like


def _write_tracks(folder: Path, rng: np.random.Generator, n_tracks: int = 120, dim: int = 24) -> None:
    """Tracks whose segments share a direction (and a common offset, as real embeddings do)."""
    folder.mkdir()
    common = rng.standard_normal(dim)
    for t in range(n_tracks):
        centre = common + rng.standard_normal(dim)
        rows = centre + 0.5 * rng.standard_normal((int(rng.integers(15, 40)), dim))
        np.savez(folder / f"{t:04d}.npz", pen=rows.astype(np.float32),
                 query_pen=(centre + 0.5 * rng.standard_normal((10, dim))).astype(np.float32))


def _stats(tracks: list[np.ndarray]) -> tuple[float, float]:
    within = float(np.median([np.mean((t @ t.T)[np.triu_indices(len(t), 1)]) for t in tracks]))
    firsts = np.stack([t[0] for t in tracks])
    across = float(np.median((firsts @ firsts.T)[np.triu_indices(len(firsts), 1)]))
    return within, across


def test_synthetic_segments_keep_the_real_structure(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    _write_tracks(tmp_path / "cache", rng)
    real, excerpts = segment_like.real_tracks([tmp_path / "cache"])
    assert len(real) == len(excerpts) == 120
    model = segment_like.fit(real, seed=0)

    data, queries, picked = segment_like.like_segment_data(model, n_tracks=400, per_track=20, queries=30,
                                                           query_segments=10, seed=1)
    assert data.shape == (8000, 24) and queries.shape == (30, 10, 24) and len(set(picked)) == 30
    np.testing.assert_allclose(np.linalg.norm(data, axis=1), 1.0, atol=1e-5)

    made = [data[i * 20:(i + 1) * 20].astype(np.float64) for i in range(400)]
    real_within, real_across = _stats(real)
    made_within, made_across = _stats(made)
    assert real_within - made_within < 0.06, (real_within, made_within)  # recurring sections may add a bit
    assert made_within - real_within < 0.1, (real_within, made_within)
    assert abs(real_across - made_across) < 0.06, (real_across, made_across)
    assert made_within > made_across + 0.2  # tracks are groups, not one cloud

    # A query is more of its own track: its averaged max-sim is highest there for nearly every query.
    own = 0
    for q, track in zip(queries, picked):
        scores = (q @ data.T).reshape(10, 400, 20).max(axis=2).mean(axis=0)
        own += int(scores.argmax() == track)
    assert own >= 27, own


def test_an_empty_cache_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    try:
        segment_like.real_tracks([tmp_path / "empty"])
    except SystemExit as stop:
        assert "bench_neighbours" in str(stop)
    else:
        raise AssertionError("an empty folder was accepted")
