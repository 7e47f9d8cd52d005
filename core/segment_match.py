"""Track similarity from segment matches: each segment of a query finds its best-matching segment of a
library track, and the track's score is the average of those best matches ("averaged max-sim").

Why not one mean vector per track: a soundtrack's cues share instruments and mood, so their mean vectors
sit close together, while a 30-s excerpt matches a few sections of its own track far better than any
section of another cue. Measured with benchmarks/bench_neighbours.py (query: the middle 30 s through a
64 kb/s mp3, its 10 segments; see models/similarity.md for the curves on both dev libraries).

The ANN index holds every analysed segment, labelled `track_id * STRIDE + position`; a query's segments
each fetch their nearest segments (candidates), and every candidate track is then scored exactly from all
of its segments' vectors, so the ANN only has to find the right tracks, not every segment's best match.

Pure functions: the service loads the index and the query's outputs, this decides.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEGMENT_KIND = "musicnn-seg-v1"
"""The index's vector kind: the front-end's per-segment `penultimate` embeddings (core.frontend), unit length.
A change of recipe or labelling bumps it, so a saved index of another kind is rebuilt."""
STRIDE = 1 << 10
"""Segment labels per track: a library track is analysed on at most this many segments."""
QUERY_HOP = 1.0
"""Seconds between the starts of a query's (overlapping) 3-s windows: any library section that lies
within the query is then matched by a window at most half a second off, where the front-end's embeddings
of one recording agree closely (bench_neighbours' dense queries)."""
CANDIDATES_PER_SEGMENT = 64
"""Nearest segments each query segment fetches from the index; their tracks are the candidates scored
exactly. With 24 segments per track, 64 segments reach at least three tracks per query segment."""


def labels_of(track_id: int, count: int) -> np.ndarray:
    """The index labels of a track's `count` segments."""
    if not 0 < count <= STRIDE:
        raise ValueError(f"a track is indexed on 1 to {STRIDE} segments, not {count}")
    return np.int64(track_id) * STRIDE + np.arange(count, dtype=np.int64)


def track_of(labels: np.ndarray) -> np.ndarray:
    return np.asarray(labels, dtype=np.int64) // STRIDE


def position_of(labels: np.ndarray) -> np.ndarray:
    return np.asarray(labels, dtype=np.int64) % STRIDE


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class SegmentMatch:
    """How a query matched one track: `score` the averaged max-sim over the query's segments; `query_pos`
    and `entry_pos` the best-matching pair of segments (positions in the query and in the track's indexed
    segments) and `best` their cosine."""

    track_id: int
    score: float
    query_pos: int
    entry_pos: int
    best: float


def match(query: np.ndarray, entry: np.ndarray, track_id: int = 0) -> SegmentMatch:
    """Score one track's (n, d) segment vectors against the query's (m, d), both unit rows."""
    sims = np.asarray(query, np.float64) @ np.asarray(entry, np.float64).T
    best_entry = sims.argmax(axis=1)
    best = sims[np.arange(sims.shape[0]), best_entry]
    q = int(best.argmax())
    return SegmentMatch(int(track_id), float(best.mean()), q, int(best_entry[q]), float(best[q]))


def rank_tracks(query: np.ndarray, entries: dict[int, np.ndarray], k: int) -> list[SegmentMatch]:
    """The k best tracks of `entries` (track id -> its unit segment rows) for the query's unit rows."""
    matches = [match(query, rows, track_id) for track_id, rows in entries.items() if len(rows)]
    matches.sort(key=lambda m: (-m.score, m.track_id))
    return matches[:k]


def with_tracks(query: np.ndarray, matches: list[SegmentMatch], entries: dict[int, np.ndarray],
                k: int) -> list[SegmentMatch]:
    """`matches` (the k best) with every track of `entries` (track id -> its unit segment rows) listed
    too: those missing are scored and put first, in place of the weakest (the query's own recording, found
    by other means, may not be among the nearest by embedding)."""
    listed = {m.track_id for m in matches}
    added = rank_tracks(query, {t: rows for t, rows in entries.items() if t not in listed}, len(entries))
    return added + matches[:max(0, k - len(added))]


class SegmentTable:
    """Unit segment rows not indexed yet (an add's new tracks), searched exactly as an index is queried.
    Rows go into a buffer that doubles, so adding n tracks copies O(n) rows, not O(n^2)."""

    def __init__(self) -> None:
        self._rows: np.ndarray | None = None
        self._labels = np.zeros(0, np.int64)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, labels: np.ndarray, rows: np.ndarray) -> None:
        end = self._size + len(rows)
        if self._rows is None:
            self._rows = np.zeros((0, rows.shape[1]), np.float32)
        if end > len(self._rows):
            capacity = max(end, 2 * len(self._rows))
            self._rows = np.resize(self._rows, (capacity, self._rows.shape[1]))
            self._labels = np.resize(self._labels, capacity)
        self._rows[self._size:end] = rows
        self._labels[self._size:end] = labels
        self._size = end

    def query(self, query: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Each query row's k nearest labels with their cosines, best first: an index's `query`, exact."""
        if self._rows is None or self._size == 0:
            return [[] for _ in range(len(query))]
        sims = np.asarray(query, np.float32) @ self._rows[:self._size].T
        k = min(k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        hits = []
        for row, cols in zip(sims, top):
            cols = cols[np.argsort(-row[cols], kind="stable")]
            hits.append([(int(self._labels[c]), float(row[c])) for c in cols])
        return hits


def closest_tracks(hits: list[list[tuple[int, float]]], exclude: set[int], n: int) -> list[int]:
    """The n tracks with the most similar segments among the hits, by the sum over query segments of each
    track's best hit: the averaged max-sim as far as the hits tell it, without reading any track's rows."""
    best: dict[tuple[int, int], float] = {}
    for q, row in enumerate(hits):
        for label, sim in row:
            track = int(label) // STRIDE
            if track not in exclude:
                best[q, track] = max(best.get((q, track), -1.0), sim)
    totals: dict[int, float] = {}
    for (_q, track), sim in best.items():
        totals[track] = totals.get(track, 0.0) + sim
    return sorted(totals, key=lambda t: (-totals[t], t))[:n]


def candidate_tracks(hits: list[list[tuple[int, float]]], exclude: set[int]) -> list[int]:
    """Tracks among the index's segment hits of every query segment, in order of first appearance."""
    seen: dict[int, None] = {}
    for row in hits:
        for label, _sim in row:
            track = int(label) // STRIDE
            if track not in exclude:
                seen.setdefault(track, None)
    return list(seen)
