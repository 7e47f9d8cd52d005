"""Approximate nearest-neighbour search over track embeddings, behind one small interface.

Vectors are L2-normalised float32 (we normalise on the way in), so cosine similarity is the inner product
and every backend reports it the same way: a score in [-1, 1], best first. Three backends:

- ``hnsw`` (hnswlib, the default): incremental add, remove by mark_deleted, slots of removed tracks reused
  by new ones (replace_deleted), grows by resize_index, ``ef`` settable at query time.
- ``annoy``: annoy cannot add items to a built forest, so it is rebuilt from the stored vectors on the first
  query after any change; cheap to load (mmap), costly to change.
- ``exact`` (scikit-learn NearestNeighbors, brute force, cosine): the reference for recall, and good enough
  for a small library. scikit-learn (with SciPy, ~230 MB) is the ``exact`` extra, which the runtime install
  leaves out; choosing this backend without it is refused when the settings are read (require_backend).

On disk an index is a folder: each save writes ``index-<version>.*`` data files and a JSON sidecar describing
them, each to a temporary name, fsynced and renamed, and only then replaces the small ``CURRENT`` pointer.
A save that dies at any point leaves the previous version serving. ``load_index`` refuses (IndexMismatch)
an index made from another embedding kind or dimension, so the caller rebuilds instead of querying
vectors of one space with a vector of another.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from core.config import Settings
from core.errors import MissingExtra
from core.extras import importable, install_command

log = logging.getLogger(__name__)

BACKENDS = ("hnsw", "annoy", "exact")
FORMAT = 1
"""On-disk layout version; an index written in another layout is refused like a mismatched one."""
POINTER = "CURRENT"
LOCK = ".lock"
PREFIX = "index-"

Hit = tuple[int, float]


class IndexMismatch(Exception):
    """The saved index was built for other vectors (embedding kind/version, dimension or file layout):
    a deployment issue, not user input. Rebuild the index from the stored embeddings."""


@dataclass(frozen=True)
class IndexParams:
    """Build and query settings, with defaults measured by benchmarks/bench_ann.py on this 2-core machine
    (CPU time per query, one thread, recall@10 against brute force):

    - hnsw M=32, ef_construction=100, ef=128: on 1M 45-d vectors shaped like our descriptor-v1 embeddings
      of the real library, recall 0.998 at 0.54 ms (the issue's target: <= 1 ms at >= 0.99); on 1M
      vectors shaped like the GTZAN descriptor table 1.000 at 0.53 ms. Random 64-d unit vectors (the
      hardest case): 0.995 at 10k (0.14 ms) but 0.86 at 100k, where ef=512 is needed for 0.996 (1.8 ms);
      at 1M random vectors 0.99 needs ef=2048 (~10 ms). ef=256 buys no recall on the realistic sets
      (1.000) and costs 1.5-2x the time (0.83-1.03 ms at 1M).
    - annoy n_trees=50, search_k=50000: 0.992 at 100k random (5.0 ms); annoy's own default search_k
      (n_trees * k) reached only 0.14 there.
    - The segment-level index (bench_ann --segments 20: 200-d vectors shaped like the front-end's real
      segment embeddings, queries of 10 segments fetching 64 each): hnsw M=32 efc=100 ef=128 finds
      segments with recall@10 0.997 at 100k and 0.979 at 1M (50 000 tracks). A build with efc=40 costs a
      third of the CPU and keeps up at 100k, but falls to 0.94 at 1M (M=16 efc=40: 0.93), so these
      defaults stay (models/similarity.md).

    m, ef_construction: hnsw graph degree and build-time beam (fixed once built).
    ef: hnsw query beam (>= k is used anyway); raise it for recall, lower it for speed.
    n_trees: annoy forest size (fixed once built). search_k: annoy nodes inspected per query, -1 means
    annoy's default of n_trees * k.
    num_threads: threads hnswlib and annoy may use for add/build and batch queries; one by default
    because the service already runs one request per worker on a 2-core machine.
    """

    m: int = 32
    ef_construction: int = 100
    ef: int = 128
    n_trees: int = 50
    search_k: int = 50_000
    metric: str = "cosine"
    num_threads: int = 1
    seed: int = 100

    def __post_init__(self) -> None:
        if self.metric != "cosine":
            raise ValueError(f"metric {self.metric!r} is not supported: vectors are compared by cosine")
        if self.m < 2 or self.ef_construction < 1 or self.ef < 1 or self.n_trees < 1 or self.num_threads < 1:
            raise ValueError(f"index parameters out of range: {self}")
        if self.search_k < -1 or self.search_k == 0:
            raise ValueError(f"search_k must be -1 (annoy's default) or positive, not {self.search_k}")

    @classmethod
    def from_settings(cls, settings: Settings) -> IndexParams:
        return cls(m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction, ef=settings.hnsw_ef,
                   n_trees=settings.annoy_trees, search_k=settings.annoy_search_k)


class VectorIndex(ABC):
    """Track id -> unit vector, searchable by cosine similarity.

    Writes (add, remove, save, set_query_params) must not run concurrently with each other or with
    queries; queries may run concurrently with each other. The service keeps one writer per index.
    """

    backend: str

    def __init__(self, dim: int, params: IndexParams, kind: str) -> None:
        if dim < 1:
            raise ValueError(f"dimension must be positive, not {dim}")
        if not kind:
            raise ValueError("the embedding kind (e.g. 'descriptor-v1') is required: it guards against "
                             "querying an index with vectors of another space")
        self.dim = dim
        self.params = params
        self.kind = kind

    # --- the interface -------------------------------------------------------------------------------

    def add(self, ids: np.ndarray | Iterable[int], vectors: np.ndarray) -> None:
        """Insert tracks, or replace the vectors of ids already present (also ids removed before)."""
        ids_arr, batch = self._check_ids(ids), self._unit_rows(vectors)
        if ids_arr.size != batch.shape[0]:
            raise ValueError(f"{ids_arr.size} ids for {batch.shape[0]} vectors")
        if np.unique(ids_arr).size != ids_arr.size:
            raise ValueError("ids passed to add() must be unique")
        if ids_arr.size:
            self._add(ids_arr, batch)

    def remove(self, ids: np.ndarray | Iterable[int]) -> int:
        """Drop tracks; ids not in the index are ignored. Returns how many were removed."""
        ids_arr = np.unique(self._check_ids(ids))
        return self._remove(ids_arr) if ids_arr.size else 0

    def query(self, vectors: np.ndarray, k: int, exclude: set[int] | None = None) -> list[list[Hit]]:
        """The k nearest live tracks of each query vector, as (id, cosine similarity), best first.

        One list per query row (a single 1-D vector is a batch of one). Ids in `exclude` are never
        returned and do not count against k, so `exclude={query_track}` still yields k neighbours.
        An empty index gives an empty list per query.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        batch = self._unit_rows(vectors)
        skip = exclude or set()
        want = min(k + len(skip), len(self))
        if want == 0:
            return [[] for _ in range(batch.shape[0])]
        ids, sims = self._search(batch, want)
        out: list[list[Hit]] = []
        for row_ids, row_sims in zip(ids, sims):
            hits = [(int(i), float(s)) for i, s in zip(row_ids, row_sims) if int(i) not in skip]
            out.append(hits[:k])
        return out

    def set_query_params(self, *, ef: int | None = None, search_k: int | None = None,
                         num_threads: int | None = None) -> None:
        """Change what may change without a rebuild (the build-time parameters are fixed)."""
        changes = {name: value for name, value in
                   (("ef", ef), ("search_k", search_k), ("num_threads", num_threads)) if value is not None}
        self.params = replace(self.params, **changes)
        self._apply_query_params()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this index as a new version in folder `path` and make it the current one, atomically.

        Every file goes to a temporary name, is fsynced and renamed; the CURRENT pointer is replaced last,
        so a crash anywhere leaves the previous version loadable. The previous version is kept (a reader
        may have just read the old pointer); older ones are deleted. Saves to one folder from several
        processes (the bot and a CLI reindex) take turns on a lock file. Returns the sidecar's path.
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            return self._save_locked(folder)

    def _save_locked(self, folder: Path) -> Path:
        version = _new_version(folder)
        stem = f"{PREFIX}{version}"
        files = self._save_files(folder, stem)
        meta = {
            "format": FORMAT, "backend": self.backend, "dim": self.dim, "kind": self.kind,
            "count": len(self), "params": asdict(self.params), "files": files,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        } | self._extra_meta()
        sidecar = folder / f"{stem}.json"
        _write_atomic(sidecar, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
        previous = _read_pointer(folder).get("current")
        pointer = {"format": FORMAT, "current": version, "previous": previous}
        _write_atomic(folder / POINTER, lambda tmp: tmp.write_text(json.dumps(pointer)))
        _fsync_dir(folder)
        _delete_versions(folder, keep={version, previous})
        log.info("saved %s index of %d %s vectors to %s", self.backend, len(self), self.kind, sidecar)
        return sidecar

    @abstractmethod
    def __len__(self) -> int:
        """Live tracks (removed ones excluded)."""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """Live track ids, sorted, int64."""

    # --- what a backend provides -----------------------------------------------------------------------

    @abstractmethod
    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def _remove(self, ids: np.ndarray) -> int: ...

    @abstractmethod
    def _search(self, batch: np.ndarray, k: int) -> tuple[Sequence[np.ndarray], Sequence[np.ndarray]]:
        """Per query row: ids (int64, <= k of them, best first) and their cosine similarities;
        called with 1 <= k <= len(self)."""

    @abstractmethod
    def _save_files(self, folder: Path, stem: str) -> dict[str, str]:
        """Write the data files atomically; return {role: file name}."""

    def _extra_meta(self) -> dict[str, Any]:
        return {}

    def _apply_query_params(self) -> None:
        return None

    # --- input checks shared by all backends -------------------------------------------------------------

    def _unit_rows(self, vectors: np.ndarray) -> np.ndarray:
        batch = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if batch.ndim != 2 or batch.shape[1] != self.dim:
            raise ValueError(f"expected vectors of dimension {self.dim}, got shape {np.shape(vectors)}")
        if not np.all(np.isfinite(batch)):
            raise ValueError("vectors must be finite")
        norms = np.linalg.norm(batch, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise ValueError("a zero vector has no direction to compare")
        return np.ascontiguousarray(batch / norms, dtype=np.float32)

    @staticmethod
    def _check_ids(ids: np.ndarray | Iterable[int]) -> np.ndarray:
        raw = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids))
        if raw.size == 0:
            return np.zeros(0, dtype=np.int64)
        if raw.ndim != 1 or not np.issubdtype(raw.dtype, np.integer):
            raise ValueError(f"ids must be a 1-D integer array, got {raw.dtype} {raw.shape}")
        if raw.min() < 0:
            raise ValueError("ids must be non-negative")
        return raw.astype(np.int64, copy=False)


class HnswIndex(VectorIndex):
    """hnswlib graph over inner product (= cosine on unit vectors).

    hnswlib keeps a removed item's slot and label (mark_deleted); a new id may take over such a slot
    (replace_deleted), which erases the old label. A removed id that comes back is un-deleted in its own
    slot instead, because adding it with replace_deleted would leave its old slot orphaned. `_deleted`
    mirrors which labels are currently marked deleted, which hnswlib cannot list.
    """

    backend = "hnsw"
    _MIN_CAPACITY = 1024
    _GROWTH = 1.5

    def __init__(self, dim: int, params: IndexParams, kind: str, *, graph: hnswlib.Index | None = None,
                 deleted: Iterable[int] = ()) -> None:
        super().__init__(dim, params, kind)
        if graph is None:
            graph = hnswlib.Index(space="ip", dim=dim)
            graph.init_index(max_elements=self._MIN_CAPACITY, M=params.m,
                             ef_construction=params.ef_construction, random_seed=params.seed,
                             allow_replace_deleted=True)
        self._graph = graph
        self._deleted: set[int] = set(int(i) for i in deleted)
        self._apply_query_params()

    def __len__(self) -> int:
        return self._graph.element_count - len(self._deleted)

    def ids(self) -> np.ndarray:
        labels = np.asarray(self._graph.get_ids_list(), dtype=np.int64)
        if self._deleted:
            labels = labels[~np.isin(labels, np.fromiter(self._deleted, dtype=np.int64))]
        return np.sort(labels)

    def _apply_query_params(self) -> None:
        self._graph.set_ef(self.params.ef)
        self._graph.set_num_threads(self.params.num_threads)

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        returning = np.fromiter((i in self._deleted for i in ids.tolist()), dtype=bool, count=ids.size)
        for label in ids[returning].tolist():
            self._graph.unmark_deleted(label)
            self._deleted.discard(label)
        update = returning
        free = len(self._deleted)
        if free:  # a live id must not go through replace_deleted: that would orphan its own slot
            update = returning | np.isin(ids, np.asarray(self._graph.get_ids_list(), dtype=np.int64))
        if update.any():
            self._graph.add_items(vectors[update], ids[update], replace_deleted=False)
        rest = ~update  # new ids (and, when no slot is free, live ones too: hnswlib then updates them)
        if rest.any():
            needed = self._graph.element_count + max(0, int(rest.sum()) - free)
            capacity = self._graph.get_max_elements()
            if needed > capacity:
                self._graph.resize_index(max(needed, int(capacity * self._GROWTH)))
            self._graph.add_items(vectors[rest], ids[rest], replace_deleted=True)
            if free:  # the labels whose slots were taken over are gone from the graph
                self._deleted &= set(self._graph.get_ids_list())

    def _remove(self, ids: np.ndarray) -> int:
        removed = 0
        for label in ids.tolist():
            if label in self._deleted:
                continue
            try:
                self._graph.mark_deleted(label)
            except RuntimeError:  # "Label not found": never added, or its slot was taken over
                continue
            self._deleted.add(label)
            removed += 1
        return removed

    def _search(self, batch: np.ndarray, k: int) -> tuple[Sequence[np.ndarray], Sequence[np.ndarray]]:
        labels, distances = self._graph.knn_query(batch, k=k, num_threads=self.params.num_threads)
        return labels.astype(np.int64), 1.0 - distances

    def _save_files(self, folder: Path, stem: str) -> dict[str, str]:
        name = f"{stem}.hnsw"
        _write_atomic(folder / name, lambda tmp: self._graph.save_index(str(tmp)))
        return {"graph": name}

    def _extra_meta(self) -> dict[str, Any]:
        return {"deleted": sorted(self._deleted)}

    @classmethod
    def _load(cls, folder: Path, meta: dict[str, Any], params: IndexParams) -> HnswIndex:
        graph = hnswlib.Index(space="ip", dim=meta["dim"])
        graph.load_index(str(folder / meta["files"]["graph"]), allow_replace_deleted=True)
        return cls(meta["dim"], params, meta["kind"], graph=graph, deleted=meta.get("deleted", ()))


class _MatrixIndex(VectorIndex):
    """Backends that keep every vector in one (n, dim) matrix and derive their search structure from it,
    rebuilding it lazily on the first query after a change."""

    def __init__(self, dim: int, params: IndexParams, kind: str, *, ids: np.ndarray | None = None,
                 vectors: np.ndarray | None = None) -> None:
        super().__init__(dim, params, kind)
        self._ids = np.zeros(0, np.int64) if ids is None else ids.astype(np.int64)
        self._vectors = np.zeros((0, dim), np.float32) if vectors is None else vectors.astype(np.float32)
        self._stale = True
        self._build_lock = threading.Lock()

    def __len__(self) -> int:
        return int(self._ids.size)

    def ids(self) -> np.ndarray:
        return np.sort(self._ids)

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        keep = ~np.isin(self._ids, ids)
        self._ids = np.concatenate([self._ids[keep], ids])
        self._vectors = np.concatenate([self._vectors[keep], vectors])
        self._stale = True

    def _remove(self, ids: np.ndarray) -> int:
        gone = np.isin(self._ids, ids)
        if gone.any():
            self._ids, self._vectors = self._ids[~gone], self._vectors[~gone]
            self._stale = True
        return int(gone.sum())

    def _search(self, batch: np.ndarray, k: int) -> tuple[Sequence[np.ndarray], Sequence[np.ndarray]]:
        self._ensure_built()
        return self._nearest(batch, k)

    def _ensure_built(self) -> None:
        with self._build_lock:
            if self._stale and len(self):
                self._build()
                self._stale = False

    @abstractmethod
    def _build(self) -> None: ...

    @abstractmethod
    def _nearest(self, batch: np.ndarray, k: int) -> tuple[Sequence[np.ndarray], Sequence[np.ndarray]]: ...

    def _save_vectors(self, folder: Path, stem: str) -> dict[str, str]:
        ids_name, vectors_name = f"{stem}.ids.npy", f"{stem}.vectors.npy"
        _write_atomic(folder / ids_name, lambda tmp: _save_npy(tmp, self._ids))
        _write_atomic(folder / vectors_name, lambda tmp: _save_npy(tmp, self._vectors))
        return {"ids": ids_name, "vectors": vectors_name}

    @staticmethod
    def _load_vectors(folder: Path, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        return np.load(folder / meta["files"]["ids"]), np.load(folder / meta["files"]["vectors"])


class AnnoyIndex(_MatrixIndex):
    """annoy forest over angular distance. annoy cannot add to or remove from a built forest, so any
    change marks it stale and the next query (or save) rebuilds it from the stored vectors: fine for a
    library changed in batches, wasteful for one-track-at-a-time edits between queries."""

    backend = "annoy"

    def __init__(self, dim: int, params: IndexParams, kind: str, *, forest: Any = None,
                 ids: np.ndarray | None = None, vectors: np.ndarray | None = None) -> None:
        super().__init__(dim, params, kind, ids=ids, vectors=vectors)
        self._forest = forest
        self._stale = forest is None

    def _build(self) -> None:
        from annoy import AnnoyIndex as Forest

        forest = Forest(self.dim, "angular")
        forest.set_seed(self.params.seed)
        for row, vector in enumerate(self._vectors):
            forest.add_item(row, vector.tolist())
        forest.build(self.params.n_trees, n_jobs=self.params.num_threads)
        self._forest = forest

    def _nearest(self, batch: np.ndarray, k: int) -> tuple[Sequence[np.ndarray], Sequence[np.ndarray]]:
        ids, sims = [], []
        for vector in batch:
            rows, dist = self._forest.get_nns_by_vector(vector, k, search_k=self.params.search_k,
                                                        include_distances=True)
            ids.append(self._ids[np.asarray(rows, dtype=np.int64)])
            sims.append(1.0 - np.square(np.asarray(dist, dtype=np.float64)) / 2.0)  # angular = sqrt(2-2cos)
        return ids, sims

    def _save_files(self, folder: Path, stem: str) -> dict[str, str]:
        self._ensure_built()
        files = self._save_vectors(folder, stem)
        if self._forest is not None and len(self):
            files["forest"] = f"{stem}.annoy"
            _write_atomic(folder / files["forest"], lambda tmp: self._forest.save(str(tmp)))
        return files

    @classmethod
    def _load(cls, folder: Path, meta: dict[str, Any], params: IndexParams) -> AnnoyIndex:
        from annoy import AnnoyIndex as Forest

        ids, vectors = cls._load_vectors(folder, meta)
        forest = None
        if "forest" in meta["files"]:
            forest = Forest(meta["dim"], "angular")
            forest.load(str(folder / meta["files"]["forest"]))
        return cls(meta["dim"], params, meta["kind"], forest=forest, ids=ids, vectors=vectors)


class ExactIndex(_MatrixIndex):
    """Brute force with scikit-learn (cosine): every query scans every vector. The reference for recall."""

    backend = "exact"

    def _build(self) -> None:
        from sklearn.neighbors import NearestNeighbors

        self._model = NearestNeighbors(metric="cosine", algorithm="brute").fit(self._vectors)

    def _nearest(self, batch: np.ndarray, k: int) -> tuple[Sequence[np.ndarray], Sequence[np.ndarray]]:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.params.num_threads):
            distances, rows = self._model.kneighbors(batch, n_neighbors=k)
        return self._ids[rows], 1.0 - distances

    def _save_files(self, folder: Path, stem: str) -> dict[str, str]:
        return self._save_vectors(folder, stem)

    @classmethod
    def _load(cls, folder: Path, meta: dict[str, Any], params: IndexParams) -> ExactIndex:
        ids, vectors = cls._load_vectors(folder, meta)
        return cls(meta["dim"], params, meta["kind"], ids=ids, vectors=vectors)


_CLASSES: dict[str, type[HnswIndex] | type[AnnoyIndex] | type[ExactIndex]] = {
    "hnsw": HnswIndex, "annoy": AnnoyIndex, "exact": ExactIndex,
}


def require_backend(backend: str) -> None:
    """Refuse a backend this install cannot build: an unknown name (ValueError), or ``exact`` without
    scikit-learn (MissingExtra, with the pip command). Called when the settings are read, so an operator
    learns it at start-up rather than on the first reindex. Looks for scikit-learn without importing it."""
    if backend not in _CLASSES:
        raise ValueError(f"unknown index backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "exact" and not importable("sklearn"):
        raise MissingExtra(f"the exact index backend needs scikit-learn, which the runtime install leaves out: "
                           f"{install_command('exact')}")


def create_index(backend: str, dim: int, params: IndexParams | None = None, *, kind: str) -> VectorIndex:
    """An empty index. `kind` names the embedding and its version (e.g. "descriptor-v1")."""
    require_backend(backend)
    return _CLASSES[backend](dim, params or IndexParams(), kind)


def current_version(path: str | os.PathLike[str]) -> str | None:
    """The version the folder's pointer names (a cheap read, to see whether a served index is stale), or
    None if nothing was ever saved there."""
    return _read_pointer(Path(path)).get("current")


def load_index(path: str | os.PathLike[str], *, expected_kind: str | None,
               expected_dim: int | None = None) -> VectorIndex:
    """The current version saved in folder `path`.

    Raises FileNotFoundError if nothing was ever saved there, and IndexMismatch if it holds another
    embedding kind or dimension than expected (pass expected_kind=None only in tools that inspect).
    """
    folder = Path(path)
    pointer = _read_pointer(folder)
    if not pointer:
        raise FileNotFoundError(f"no index saved in {folder}")
    if pointer.get("format") != FORMAT:
        raise IndexMismatch(f"index in {folder} has layout {pointer.get('format')}, we read {FORMAT}")
    meta = json.loads((folder / f"{PREFIX}{pointer['current']}.json").read_text())
    if expected_kind is not None and meta["kind"] != expected_kind:
        raise IndexMismatch(f"index in {folder} holds {meta['kind']!r} vectors, expected {expected_kind!r}")
    if expected_dim is not None and meta["dim"] != expected_dim:
        raise IndexMismatch(f"index in {folder} holds {meta['dim']}-d vectors, expected {expected_dim}-d")
    if meta["backend"] not in _CLASSES:
        raise IndexMismatch(f"index in {folder} uses backend {meta['backend']!r}, unknown here")
    index = _CLASSES[meta["backend"]]._load(folder, meta, IndexParams(**meta["params"]))
    if len(index) != meta["count"]:
        raise IndexMismatch(f"index in {folder} holds {len(index)} vectors, its sidecar says {meta['count']}")
    log.info("loaded %s index of %d %s vectors from %s", index.backend, len(index), index.kind, folder)
    return index


# --- files ---------------------------------------------------------------------------------------------

def _write_atomic(final: Path, write: Callable[[Path], Any]) -> None:
    """`write(tmp)` then fsync and rename over `final`; on any failure the temporary file is removed."""
    tmp = final.with_name(f"{final.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_npy(tmp: Path, array: np.ndarray) -> None:
    with open(tmp, "wb") as handle:  # a handle, so numpy does not append ".npy" to the temporary name
        np.save(handle, array, allow_pickle=False)


def _read_pointer(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / POINTER).read_text())
    except FileNotFoundError:
        return {}


def _new_version(folder: Path) -> str:
    """Sortable and unused in `folder` (hex nanoseconds)."""
    while True:
        version = f"{time.time_ns():016x}"
        if not any(folder.glob(f"{PREFIX}{version}.*")):
            return version


def _delete_versions(folder: Path, keep: set[str | None]) -> None:
    """Remove data of versions other than `keep`, including leftovers of saves that died."""
    for entry in folder.iterdir():
        if entry.name.startswith(PREFIX):
            version = entry.name[len(PREFIX):].split(".", 1)[0]
            if version not in keep:
                entry.unlink(missing_ok=True)

