"""The database shelf under concurrent requests: one bot process serving several members loads a newly
published index for each of them at once (seen in the fault drill: one request emptied the cache folder the
other was unpacking into, and its member got an error id)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from core.config import Settings
from core.index import IndexParams, create_index
from core.segment_match import SEGMENT_KIND
from core.shelf import DatabaseShelf
from core.store import Store

GUILD = 7


async def test_concurrent_loads_of_a_new_version_all_get_the_index(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    store = await Store.open(tmp_path / "shelf.sqlite3")
    try:
        shelf = DatabaseShelf(store, settings)
        vectors = np.random.default_rng(0).normal(size=(400, 200)).astype(np.float32)
        for _ in range(5):  # each round: a new version, then twelve requests that all see it first
            index = create_index("hnsw", 200, IndexParams(), kind=SEGMENT_KIND)
            index.add(np.arange(len(vectors)), vectors)
            version = await shelf.publish(GUILD, index)
            loaded = await asyncio.gather(*(shelf.load(GUILD) for _ in range(12)))
            assert all(v == version and len(ix) == len(vectors) for v, ix in loaded)
    finally:
        await store.close()
