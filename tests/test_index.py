"""core.index: every backend against numpy brute force, the add/remove/re-add life of a track, exclusion,
and saving that survives a crash. Real hnswlib, annoy and scikit-learn on small random sets."""
from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import Settings
from core.index import (BACKENDS, LOCK, POINTER, IndexMismatch, IndexParams, VectorIndex, create_index,
                        load_index)

DIM = 16
KIND = "test-v1"


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def filled(backend: str, n: int = 300, seed: int = 0) -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    """An index of n random vectors under ids 1000, 1003, ... (not positions, to catch mix-ups)."""
    vectors = unit_vectors(n, seed=seed)
    ids = 1000 + 3 * np.arange(n, dtype=np.int64)
    index = create_index(backend, DIM, kind=KIND)
    index.add(ids, vectors)
    return index, ids, vectors


def brute_force(ids: np.ndarray, vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    return ids[np.argsort(-(vectors @ query))[:k]].tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_returns_the_exact_neighbours_with_cosine_scores(backend: str) -> None:
    index, ids, vectors = filled(backend)
    queries = unit_vectors(20, seed=1)
    results = index.query(queries, 10)
    assert len(results) == 20
    recall = np.mean([len({i for i, _ in hits} & set(brute_force(ids, vectors, q, 10))) / 10
                      for q, hits in zip(queries, results)])
    assert recall == 1.0  # a few hundred vectors: the default ef and search_k search them all
    by_id = dict(zip(ids.tolist(), vectors))
    for q, hits in zip(queries, results):
        scores = [s for _, s in hits]
        assert scores == sorted(scores, reverse=True)
        for track, score in hits:
            assert score == pytest.approx(float(by_id[track] @ q), abs=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vectors_are_normalised_on_the_way_in(backend: str) -> None:
    index, ids, vectors = filled(backend, n=50)
    index.add(ids[:1], 7.5 * vectors[:1])
    (track, score), *_ = index.query(0.01 * vectors[0], 3)[0]
    assert track == ids[0] and score == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_removed_tracks_never_come_back_until_re_added(backend: str) -> None:
    index, ids, vectors = filled(backend, n=200)
    gone = ids[:50]
    assert index.remove(np.concatenate([gone, [999_999]])) == 50  # unknown ids are ignored
    assert index.remove(gone) == 0
    assert len(index) == 150 and set(index.ids().tolist()) == set(ids[50:].tolist())
    for hits in index.query(vectors[:50], 10):
        assert len(hits) == 10 and not {i for i, _ in hits} & set(gone.tolist())

    fresh = unit_vectors(50, seed=7)
    index.add(gone, fresh)  # the same ids come back with new vectors
    assert len(index) == 200
    for track, vector in zip(gone.tolist(), fresh):
        assert index.query(vector, 1)[0][0] == (track, pytest.approx(1.0, abs=1e-5))


@pytest.mark.parametrize("backend", BACKENDS)
def test_adding_a_present_id_replaces_its_vector(backend: str) -> None:
    index, ids, vectors = filled(backend, n=100)
    index.add(ids[:1], -vectors[:1])
    assert len(index) == 100
    top = index.query(-vectors[0], 1)[0][0]
    assert top == (ids[0], pytest.approx(1.0, abs=1e-5))
    assert ids[0] not in [i for i, _ in index.query(vectors[0], 5)[0]]


def test_hnsw_new_tracks_take_the_slots_of_removed_ones_and_the_graph_grows_when_full() -> None:
    index, ids, vectors = filled("hnsw", n=1000)
    graph = index._graph  # the slots are the point of this test
    index.remove(ids[:100])
    index.add(np.arange(5000, 5100, dtype=np.int64), unit_vectors(100, seed=3))
    assert graph.element_count == 1000 and len(index) == 1000
    more = unit_vectors(600, seed=4)
    index.add(np.arange(6000, 6600, dtype=np.int64), more)
    assert len(index) == 1600 and graph.get_max_elements() >= 1600
    assert index.query(more[-1], 1)[0][0][0] == 6599


def test_hnsw_ids_removed_then_re_added_after_others_took_free_slots_stay_consistent() -> None:
    index, ids, vectors = filled("hnsw", n=50)
    index.remove(ids[:2])
    index.add(np.array([1], dtype=np.int64), unit_vectors(1, seed=9))  # takes one of the two free slots
    index.add(ids[:2], vectors[:2])  # one still has its slot, the other's label is gone from the graph
    assert len(index) == 51 and set(index.ids().tolist()) == set(ids.tolist()) | {1}
    for track, vector in zip(ids[:2].tolist(), vectors[:2]):
        assert index.query(vector, 1)[0][0][0] == track


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.booleans(), st.lists(st.integers(0, 40), min_size=1, max_size=8,
                                                     unique=True)), min_size=1, max_size=12),
       seed=st.integers(0, 2**16))
def test_any_sequence_of_adds_and_removes_matches_a_plain_dict(backend: str, ops: list, seed: int) -> None:
    index = create_index(backend, DIM, kind=KIND)
    model: dict[int, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    for is_add, batch in ops:
        if is_add:
            vectors = unit_vectors(len(batch), seed=int(rng.integers(2**31)))
            index.add(np.array(batch, dtype=np.int64), vectors)
            model.update(zip(batch, vectors))
        else:
            assert index.remove(batch) == sum(t in model for t in batch)
            for t in batch:
                model.pop(t, None)
    assert len(index) == len(model) and index.ids().tolist() == sorted(model)
    if model:
        for track, vector in model.items():
            hits = index.query(vector, len(model))[0]
            assert hits[0] == (track, pytest.approx(1.0, abs=1e-5))
            assert {i for i, _ in hits} <= set(model)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exclude_drops_the_query_track_and_still_fills_k(backend: str) -> None:
    index, ids, vectors = filled(backend, n=100)
    hits = index.query(vectors[5], 10, exclude={int(ids[5]), int(ids[6])})[0]
    assert len(hits) == 10 and not {i for i, _ in hits} & {ids[5], ids[6]}
    assert [i for i, _ in hits] == [t for t in brute_force(ids, vectors, vectors[5], 12)
                                    if t not in (ids[5], ids[6])][:10]
    assert len(index.query(vectors[5], 10, exclude=set(ids[:95].tolist()))[0]) == 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_larger_than_the_library_returns_everything(backend: str) -> None:
    index, ids, _ = filled(backend, n=7)
    hits = index.query(unit_vectors(1, seed=2), 50)[0]
    assert sorted(i for i, _ in hits) == ids.tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_empty_index_answers_with_no_hits(backend: str, tmp_path: Path) -> None:
    index = create_index(backend, DIM, kind=KIND)
    assert len(index) == 0 and index.ids().size == 0
    assert index.query(unit_vectors(2), 5) == [[], []]
    index.save(tmp_path)
    assert load_index(tmp_path, expected_kind=KIND).query(unit_vectors(1)[0], 5) == [[]]
    full, ids, _ = filled(backend, n=5)
    full.remove(ids)
    assert full.query(unit_vectors(1), 3) == [[]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_and_load_round_trip(backend: str, tmp_path: Path) -> None:
    params = IndexParams(m=8, ef_construction=50, ef=40, n_trees=20, search_k=2000)
    index = create_index(backend, DIM, params, kind=KIND)
    ids, vectors = np.arange(120, dtype=np.int64) * 2, unit_vectors(120)
    index.add(ids, vectors)
    index.remove(ids[:10])
    queries = unit_vectors(5, seed=1)
    before = index.query(queries, 8)
    index.save(tmp_path / "guild-1")

    loaded = load_index(tmp_path / "guild-1", expected_kind=KIND, expected_dim=DIM)
    assert (loaded.backend, loaded.dim, loaded.kind, loaded.params) == (backend, DIM, KIND, params)
    assert len(loaded) == 110 and loaded.ids().tolist() == ids[10:].tolist()
    assert [[i for i, _ in hits] for hits in loaded.query(queries, 8)] == [[i for i, _ in h] for h in before]
    loaded.add(ids[:1], vectors[:1])  # still editable: removed ids come back, others leave
    loaded.remove(ids[10:11])
    assert loaded.query(vectors[0], 1)[0][0][0] == ids[0] and len(loaded) == 110


def test_the_sidecar_records_what_the_index_was_built_from(tmp_path: Path) -> None:
    index, _, _ = filled("hnsw", n=10)
    sidecar = index.save(tmp_path)
    meta = json.loads(sidecar.read_text())
    assert meta["backend"] == "hnsw" and meta["dim"] == DIM and meta["kind"] == KIND and meta["count"] == 10
    assert {"m", "ef_construction", "ef", "n_trees", "metric"} <= set(meta["params"])


def test_load_refuses_another_embedding_or_dimension(tmp_path: Path) -> None:
    index, _, _ = filled("hnsw", n=10)
    index.save(tmp_path)
    with pytest.raises(IndexMismatch, match="descriptor-v2"):
        load_index(tmp_path, expected_kind="descriptor-v2")
    with pytest.raises(IndexMismatch, match="32-d"):
        load_index(tmp_path, expected_kind=KIND, expected_dim=32)
    with pytest.raises(FileNotFoundError):
        load_index(tmp_path / "never-saved", expected_kind=KIND)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("failing", ["first file", "pointer"])
def test_a_save_that_dies_leaves_the_previous_index_serving(backend: str, failing: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    old, ids, vectors = filled(backend, n=30)
    old.save(tmp_path)
    new = create_index(backend, DIM, kind=KIND)
    new.add(np.array([1, 2], dtype=np.int64), unit_vectors(2, seed=5))
    real_replace = os.replace

    def dying_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if failing == "first file" or Path(dst).name == POINTER:
            raise OSError("disk full (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(OSError, match="simulated"):
        new.save(tmp_path)
    monkeypatch.undo()

    served = load_index(tmp_path, expected_kind=KIND)
    assert len(served) == 30 and served.query(vectors[3], 1)[0][0][0] == ids[3]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_saves_keep_the_current_and_previous_versions_only(tmp_path: Path) -> None:
    index, ids, _ = filled("exact", n=10)
    for _ in range(4):
        index.save(tmp_path)
        index.remove(ids[:1])
        ids = ids[1:]
    pointer = json.loads((tmp_path / POINTER).read_text())
    versions = {p.name.split(".")[0] for p in tmp_path.iterdir() if p.name.startswith("index-")}
    assert versions == {f"index-{pointer['current']}", f"index-{pointer['previous']}"}
    assert len(load_index(tmp_path, expected_kind=KIND)) == 7


def test_saves_to_one_folder_take_turns(tmp_path: Path) -> None:
    index, _, _ = filled("exact", n=5)
    index.save(tmp_path)
    with open(tmp_path / LOCK, "a") as held:  # another process's save, as far as flock is concerned
        fcntl.flock(held, fcntl.LOCK_EX)
        waiting = threading.Thread(target=index.save, args=(tmp_path,))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive()
    waiting.join(10)
    assert not waiting.is_alive()


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_calls_are_refused(backend: str) -> None:
    index = create_index(backend, DIM, kind=KIND)
    with pytest.raises(ValueError, match="dimension"):
        index.add([1], unit_vectors(1, dim=DIM + 1))
    with pytest.raises(ValueError, match="unique"):
        index.add([1, 1], unit_vectors(2))
    with pytest.raises(ValueError, match="non-negative"):
        index.add([-1], unit_vectors(1))
    with pytest.raises(ValueError, match="zero vector"):
        index.add([1], np.zeros((1, DIM)))
    with pytest.raises(ValueError, match="2 ids for 1"):
        index.add([1, 2], unit_vectors(1))
    with pytest.raises(ValueError, match="k must"):
        index.query(unit_vectors(1), 0)


def test_factory_and_params_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="unknown index backend"):
        create_index("faiss", DIM, kind=KIND)
    with pytest.raises(ValueError, match="kind"):
        create_index("hnsw", DIM, kind="")
    with pytest.raises(ValueError, match="metric"):
        IndexParams(metric="l2")
    with pytest.raises(ValueError, match="out of range"):
        IndexParams(m=1)


def test_params_follow_the_settings() -> None:
    params = IndexParams.from_settings(Settings(hnsw_m=12, hnsw_ef_construction=80, hnsw_ef=33,
                                                annoy_trees=7))
    assert (params.m, params.ef_construction, params.ef, params.n_trees) == (12, 80, 33, 7)


def test_query_time_params_change_without_a_rebuild() -> None:
    index, _, vectors = filled("hnsw", n=50)
    index.set_query_params(ef=10, num_threads=2)
    assert index.params.ef == 10 and index._graph.ef == 10
    assert len(index.query(vectors[:4], 5)) == 4
