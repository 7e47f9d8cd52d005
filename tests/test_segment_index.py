"""The segment-level index with every backend (real hnswlib, annoy, scikit-learn) on real audio: the demo
clips analysed by the shipped front-end, queried with a re-encoded excerpt's segments."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.analysis import Limits, analyse
from core.cli.demo import DEMO_CLIPS
from core.config import Settings
from core.index import BACKENDS, IndexParams, create_index, load_index
from core.segment_match import (
    CANDIDATES_PER_SEGMENT,
    SEGMENT_KIND,
    STRIDE,
    SegmentTable,
    candidate_tracks,
    closest_tracks,
    labels_of,
    match,
    rank_tracks,
    track_of,
    unit_rows,
    with_tracks,
)
from tests.audio_files import write_audio


@pytest.fixture(scope="module")
def library() -> dict[int, np.ndarray]:
    """Track id -> unit segment embeddings of each demo clip, analysed as the library analyses a track."""
    limits = Limits.of(Settings(), max_segments=24)
    clips = sorted(DEMO_CLIPS.glob("*.ogg"))
    return {i + 1: unit_rows(analyse(p, limits, genre=False, mood=False).segment_embeddings)
            for i, p in enumerate(clips)}


@pytest.fixture(scope="module")
def excerpt(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """Segments of a 12-s mp3 excerpt of the fourth clip (track id 4), analysed as an upload."""
    import soundfile as sf

    clip = sorted(DEMO_CLIPS.glob("*.ogg"))[3]
    y, sr = sf.read(clip, dtype="float32")
    path = write_audio(tmp_path_factory.mktemp("excerpt") / "excerpt.mp3", y[5 * sr:17 * sr], sr=sr)
    return unit_rows(analyse(path, Limits.of(Settings()), genre=False, mood=False).segment_embeddings)


def test_labels_carry_the_track_and_the_segment() -> None:
    labels = labels_of(7, 3)
    assert labels.tolist() == [7 * STRIDE, 7 * STRIDE + 1, 7 * STRIDE + 2]
    assert track_of(labels).tolist() == [7, 7, 7]
    with pytest.raises(ValueError):
        labels_of(1, STRIDE + 1)


def test_match_averages_each_query_segments_best_match() -> None:
    entry = np.eye(3, dtype=np.float32)
    query = np.array([[1, 0, 0], [0, 0.6, 0.8]], dtype=np.float32)
    m = match(query, entry, 5)
    assert m.track_id == 5 and m.score == pytest.approx((1.0 + 0.8) / 2)
    assert (m.query_pos, m.entry_pos, m.best) == (0, 0, pytest.approx(1.0))


def test_a_track_found_otherwise_is_listed_first_in_place_of_the_weakest() -> None:
    """The query's own recording, found by its fingerprint, joins the k best even when its embeddings do
    not rank it there; a track already listed is not listed twice."""
    rng = np.random.default_rng(0)
    query = unit_rows(rng.normal(size=(3, 8)))
    entries = {t: unit_rows(rng.normal(size=(4, 8))) for t in range(1, 6)}
    best = rank_tracks(query, entries, 3)
    outside = next(t for t in entries if t not in {m.track_id for m in best})
    got = with_tracks(query, best, {outside: entries[outside]}, 3)
    assert [m.track_id for m in got] == [outside] + [m.track_id for m in best[:2]]
    assert with_tracks(query, best, {best[1].track_id: entries[best[1].track_id]}, 3) == best


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_excerpt_finds_its_own_track_through_every_backend(backend: str, library: dict[int, np.ndarray],
                                                              excerpt: np.ndarray, tmp_path: Path) -> None:
    index = create_index(backend, excerpt.shape[1], IndexParams(), kind=SEGMENT_KIND)
    for track_id, rows in library.items():
        index.add(labels_of(track_id, len(rows)), rows)
    index.save(tmp_path)
    index = load_index(tmp_path, expected_kind=SEGMENT_KIND)  # what the service serves: the saved one
    assert len(index) == sum(len(r) for r in library.values())

    hits = index.query(excerpt, CANDIDATES_PER_SEGMENT)
    candidates = candidate_tracks(hits, exclude=set())
    ranked = rank_tracks(excerpt, {t: library[t] for t in candidates}, 3)
    exact = rank_tracks(excerpt, library, 3)  # every track scored: what the candidates must not lose
    assert [m.track_id for m in ranked] == [m.track_id for m in exact]
    assert ranked[0].track_id == 4
    assert ranked[0].score > ranked[1].score
    assert candidate_tracks(hits, exclude={4}) == [t for t in candidates if t != 4]


def test_a_segment_table_answers_as_the_exact_index_does(library: dict[int, np.ndarray],
                                                          excerpt: np.ndarray) -> None:
    """An add screens each new track against the tracks it took before, which no index holds yet."""
    index = create_index("exact", excerpt.shape[1], IndexParams(), kind=SEGMENT_KIND)
    table = SegmentTable()
    assert table.query(excerpt, 8) == [[] for _ in excerpt]
    for track_id, rows in library.items():  # one track at a time, as an add takes them: the buffer grows
        index.add(labels_of(track_id, len(rows)), rows)
        table.add(labels_of(track_id, len(rows)), rows)
    assert len(table) == len(index)
    for k in (5, CANDIDATES_PER_SEGMENT):
        ours, theirs = table.query(excerpt, k), index.query(excerpt, k)
        assert [[label for label, _ in row] for row in ours] == [[label for label, _ in row] for row in theirs]
        assert np.allclose([[s for _, s in row] for row in ours], [[s for _, s in row] for row in theirs],
                           atol=1e-5)


def test_the_closest_tracks_by_their_hits_put_the_excerpts_own_track_first(
        library: dict[int, np.ndarray], excerpt: np.ndarray) -> None:
    table = SegmentTable()
    for track_id, rows in library.items():
        table.add(labels_of(track_id, len(rows)), rows)
    hits = table.query(excerpt, CANDIDATES_PER_SEGMENT)
    closest = closest_tracks(hits, exclude=set(), n=3)
    assert closest[0] == 4
    assert closest == [m.track_id for m in rank_tracks(excerpt, library, 3)][:len(closest)]
    assert 4 not in closest_tracks(hits, exclude={4}, n=3)
