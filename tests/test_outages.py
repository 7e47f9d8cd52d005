"""A database that goes away and comes back: a request meanwhile gets one friendly line (not a bug with an
error id), the next one after the restart works without a restart of ours, and a reindex caught by the
outage stops without marking any track as failed (the track was not at fault)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from core.config import Settings
from core.errors import StoreUnavailable
from core.library import Library
from core.shelf import shelf_for
from core.store import Store
from tests.conftest import wav_bytes
from tests.servers import _stop, init_postgres, start_postgres

pytestmark = pytest.mark.slow


async def test_a_killed_database_is_one_line_then_found_again_after_its_restart() -> None:
    home = Path(tempfile.mkdtemp(prefix="cratedigger-pg-outage-"))
    pg = init_postgres(home)
    server = start_postgres(pg)
    pg.psql("CREATE DATABASE outage")
    store = await Store.open_url(pg.url("outage"))
    try:
        assert await store.track_counts(1) == {}
        server.kill()  # SIGKILL the postmaster; its backends see it gone and end
        server.wait()
        with pytest.raises(StoreUnavailable, match="can't reach my database"):
            for _ in range(3):  # a pooled connection may first report its own loss; then the refusal
                await store.track_counts(1)
        with pytest.raises(StoreUnavailable):
            async with store.exclusive("library-1", wait=False):
                pass
        _stop(server)
        server = start_postgres(pg)  # as a supervisor restarts it, on the same port and data
        assert await store.track_counts(1) == {}  # the pool found the server again by itself
    finally:
        await store.close()
        _stop(server)


async def test_a_reindex_caught_by_a_database_outage_marks_no_track_failed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    store = await Store.connect(settings)
    song = tmp_path / "song.wav"
    song.write_bytes(wav_bytes(3, freq=330, seed=1))

    async def database_gone(path: Path) -> object:
        """Stands in for the analysis whose result could not be saved: the database went away."""
        raise StoreUnavailable("I can't reach my database right now; try again in a minute.")

    library = Library(settings, store, database_gone, "v1", shelf_for(store, settings))
    try:
        await store.add_track(guild_id=1, source=str(song), audio_path=str(song), content_hash="h1",
                              file_size=song.stat().st_size, file_mtime=song.stat().st_mtime, title="Song",
                              artist=None, added_by=None)
        with pytest.raises(StoreUnavailable):
            await library.reindex(1, full=True)
        [track] = await store.tracks(1)
        assert track.status == "pending" and track.error is None  # analysed again by the next reindex
    finally:
        await store.close()
