"""Indexes every process can load, and one reindex per library across processes.

Real PostgreSQL: two services with separate data folders (two machines sharing nothing but the database)
see each other's published index versions without a restart; a `cratedigger library reindex` in another
process holds the library's lock, so a reindex here is refused until that process dies (SIGKILL), when
the lock is released by the database. On SQLite, a running service picks up a CLI reindex the same way.
"""
from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path

import asyncpg
import pytest

from core.cli.demo import DEMO_CLIPS
from core.config import Settings
from core.engines.postgres import lock_key
from core.errors import LibraryBusy
from core.service import Service
from tests.processes import process_env, start

pytestmark = pytest.mark.slow
GUILD = 4242


def _clips(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        shutil.copy(DEMO_CLIPS / name, folder / name)
    return folder


ALL = sorted(p.name for p in DEMO_CLIPS.glob("*.ogg"))


async def _library_locked(url: str, guild_id: int) -> bool:
    """Whether some session holds the library's advisory lock (PostgreSQL splits a bigint key in two)."""
    key = lock_key(f"library-{guild_id}") & 0xFFFF_FFFF_FFFF_FFFF
    conn = await asyncpg.connect(url)
    try:
        return bool(await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND classid::bigint = $1 AND objid::bigint = $2", key >> 32, key & 0xFFFF_FFFF))
    finally:
        await conn.close()


async def test_a_reindex_elsewhere_publishes_to_every_process(pg_url: str, tmp_path: Path) -> None:
    first = await Service.open(Settings(data_dir=tmp_path / "machine-1", database_url=pg_url, workers=1))
    second = await Service.open(Settings(data_dir=tmp_path / "machine-2", database_url=pg_url, workers=1))
    try:
        report = await first.add_to_library(GUILD, [_clips(tmp_path / "music", ALL[:5])])
        assert len(report.added) == 5
        assert (await second.library_stats(GUILD))["indexed"] == 5  # loaded from the database
        probe = DEMO_CLIPS / ALL[6]
        before = await second.similar(GUILD, probe, k=8)
        assert len(before.results) == 5

        await first.add_to_library(GUILD, [probe])  # a new version, published by the other process
        after = await second.similar(GUILD, probe, k=8)
        assert len(after.results) == 6  # the probe itself is now in the library, named first ...
        assert after.same_recording is not None and after.same_recording.source == str(probe.resolve())
        assert await second.store.index_version(GUILD) == await first.store.index_version(GUILD)
        assert (await second.library_stats(GUILD))["indexed"] == 6  # ... and counted: no restart needed
        assert not (tmp_path / "machine-2" / "index").exists()  # nothing read from the other's disk
        assert len(list((tmp_path / "machine-2" / "index-cache" / f"guild-{GUILD}").iterdir())) == 1
    finally:
        await first.close()
        await second.close()


async def test_one_reindex_per_library_across_processes_until_its_holder_dies(pg_url: str,
                                                                              tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "bot", database_url=pg_url, workers=1)
    service = await Service.open(settings)
    cli = None
    try:
        await service.add_to_library(GUILD, [_clips(tmp_path / "music", ALL)])
        served = await service.store.index_version(GUILD)
        env = process_env(CRATEDIGGER_DATABASE_URL=pg_url, CRATEDIGGER_DATA_DIR=tmp_path / "cli",
                          CRATEDIGGER_WORKERS=1)
        cli = start(["library", "reindex", "--full", "--guild", str(GUILD), "--json"], env,
                    tmp_path / "cli.log")
        for _ in range(1200):  # until the CLI has opened its service and taken the library's lock
            if await _library_locked(pg_url, GUILD):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the CLI never took the lock:\n{cli.text()}")
        with pytest.raises(LibraryBusy, match="being reindexed"):
            await service.reindex(GUILD)
        cli.popen.send_signal(signal.SIGKILL)  # mid-reindex: no chance to unlock
        cli.popen.wait(timeout=30)
        assert await service.store.index_version(GUILD) == served  # the previous index still serves
        report = await service.reindex(GUILD)  # the database released the dead holder's lock
        assert report.index_size == len(ALL) and not report.failed
        assert (await service.library_stats(GUILD))["indexed"] == len(ALL)
    finally:
        if cli is not None:
            cli.kill()
        await service.close()


async def test_on_sqlite_a_running_service_picks_up_a_cli_reindex(tmp_path: Path) -> None:
    data = tmp_path / "data"
    service = await Service.open(Settings(data_dir=data, workers=1))
    try:
        await service.add_to_library(GUILD, [_clips(tmp_path / "music", ALL[:3])])
        assert (await service.library_stats(GUILD))["indexed"] == 3
        env = process_env(CRATEDIGGER_DATA_DIR=data, CRATEDIGGER_WORKERS=1)
        cli = start(["library", "add", "--guild", str(GUILD), str(DEMO_CLIPS / ALL[3]), "--json"], env,
                    tmp_path / "cli.log")
        assert await asyncio.to_thread(cli.popen.wait, 300) == 0, cli.text()
        assert (await service.library_stats(GUILD))["indexed"] == 4
    finally:
        await service.close()
