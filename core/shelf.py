"""Where each guild's served index is kept, so that every process serving the guild finds the newest one.

- `FolderShelf` (SQLite deployments, one machine): the index folder in the data folder, as `core.index`
  writes it (an atomic pointer swap); a process sees a new version by reading the small pointer file.
- `DatabaseShelf` (PostgreSQL deployments): each version is published into the database
  (`index_versions`), so a reindex on one machine reaches bot processes on others. A process checks the
  newest version number (one cheap query) before serving, and loads a newer one into a private cache folder
  of its data folder; no restart, no shared disk.
"""
from __future__ import annotations

import asyncio
import io
import shutil
import tarfile
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from core.config import Settings
from core.index import LOCK, VectorIndex, current_version, load_index
from core.store import Store


def index_dir(settings: Settings, guild_id: int) -> Path:
    return settings.data_dir / "index" / f"guild-{guild_id}"


def _load(folder: Path) -> VectorIndex:
    """Refuses (IndexMismatch) an index of vectors other than the ones this code makes."""
    from core.segment_match import SEGMENT_KIND

    return load_index(folder, expected_kind=SEGMENT_KIND)


class IndexShelf(ABC):
    @abstractmethod
    async def current(self, guild_id: int) -> str | None:
        """The newest version's name, or None if none was ever published."""

    @abstractmethod
    async def load(self, guild_id: int) -> tuple[str, VectorIndex]:
        """(version, index) of the newest version. Raises FileNotFoundError if there is none, IndexMismatch
        if it holds vectors of another kind than this code makes."""

    @abstractmethod
    async def publish(self, guild_id: int, index: VectorIndex) -> str:
        """Make `index` the guild's newest version; returns its name."""


class FolderShelf(IndexShelf):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def current(self, guild_id: int) -> str | None:
        return await asyncio.to_thread(current_version, index_dir(self.settings, guild_id))

    async def load(self, guild_id: int) -> tuple[str, VectorIndex]:
        folder = index_dir(self.settings, guild_id)

        def read() -> tuple[str, VectorIndex]:
            version = current_version(folder)  # read first: a newer save meanwhile is seen next time
            return str(version), _load(folder)

        return await asyncio.to_thread(read)

    async def publish(self, guild_id: int, index: VectorIndex) -> str:
        folder = index_dir(self.settings, guild_id)
        await asyncio.to_thread(index.save, folder)
        return str(await self.current(guild_id))


def pack(index: VectorIndex) -> bytes:
    """The index's folder (pointer, sidecar, data files) as an uncompressed tar (vectors barely compress)."""
    with tempfile.TemporaryDirectory(prefix="index-pack-") as tmp:
        index.save(tmp)
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            for path in sorted(Path(tmp).iterdir()):
                if path.name != LOCK:
                    tar.add(path, arcname=path.name)
        return out.getvalue()


def unpack(data: bytes, folder: Path) -> VectorIndex:
    """Extract a packed index into a fresh `folder` and load it."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(folder, filter="data")  # "data": plain files inside `folder` only
    return _load(folder)


class DatabaseShelf(IndexShelf):
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.cache = settings.data_dir / "index-cache"
        self._landing: dict[int, asyncio.Lock] = {}
        """One load per guild at a time: a load empties the guild's cache folder before it unpacks, which
        removed the folder of a load running beside it (an error for that member, seen in the fault drill)."""

    async def current(self, guild_id: int) -> str | None:
        version = await self.store.index_version(guild_id)
        return None if version is None else str(version)

    async def load(self, guild_id: int) -> tuple[str, VectorIndex]:
        async with self._landing.setdefault(guild_id, asyncio.Lock()):
            found = await self.store.index_data(guild_id)
            if found is None:
                raise FileNotFoundError(f"no index of guild {guild_id} in the database")
            version, data = found
            guild_cache = self.cache / f"guild-{guild_id}"

            def land() -> VectorIndex:
                for old in guild_cache.glob("*"):  # earlier versions this process loaded
                    shutil.rmtree(old, ignore_errors=True)
                return unpack(data, Path(tempfile.mkdtemp(prefix=f"v{version}-", dir=_made(guild_cache))))

            return str(version), await asyncio.to_thread(land)

    async def publish(self, guild_id: int, index: VectorIndex) -> str:
        data = await asyncio.to_thread(pack, index)
        version = await self.store.publish_index(guild_id, backend=index.backend, kind=index.kind,
                                                 count=len(index), data=data)
        return str(version)


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shelf_for(store: Store, settings: Settings) -> IndexShelf:
    """Indexes live beside the library: in the database when it is shared (PostgreSQL), else in files."""
    return DatabaseShelf(store, settings) if store.engine_name == "postgresql" else FolderShelf(settings)
