"""What bench_soak found when reindexes ran beside members' requests: a reindex refused "busy" by a full
work queue marked good tracks failed (they vanished from search and recommendations), and /recommend
failed with a bug when a reindex changed a track's status between two reads of the library. The
interleavings are made on purpose here, so nothing depends on the machine's speed."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from core.config import Settings
from core.errors import Busy
from core.service import Service
from tests.conftest import wav_bytes

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
GUILD, USER = 7, 70


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    folder = tmp_path_factory.mktemp("library-under-load")
    songs = folder / "songs"
    songs.mkdir()
    for i in range(3):
        (songs / f"song {i}.wav").write_bytes(wav_bytes(4, freq=200 + 150 * i, seed=i))
    svc = await Service.open(Settings(data_dir=folder / "data", workers=1, queue_size=4))
    report = await svc.add_to_library(GUILD, [songs])
    assert len(report.added) == 3, report
    yield svc
    await svc.close()


async def test_a_reindex_waits_for_room_in_a_full_queue_instead_of_failing_tracks(service: Service) -> None:
    real = service.library.analyser
    refused = 0

    async def crowded(path: Path) -> object:
        """The queue is full for the first two asks (members' requests hold it), then has room."""
        nonlocal refused
        if refused < 2:
            refused += 1
            raise Busy("I'm busy with 4 other requests; try again in about 0 s.", retry_after=0.0)
        return await real(path)

    service.library.analyser = crowded  # type: ignore[assignment]
    try:
        report = await service.reindex(GUILD, full=True)
    finally:
        service.library.analyser = real  # type: ignore[method-assign]
    assert refused == 2
    assert report.analysed == 3 and report.failed == [] and report.index_size == 3
    assert {t.status for t in await service.store.tracks(GUILD)} == {"ready"}


async def test_recommend_reads_the_library_once_while_a_reindex_changes_it(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = (await service.store.tracks(GUILD, status="ready"))[0]
    tags = service.store.tags

    async def tags_while_a_reindex_fails_a_track(guild_id: int) -> list[tuple[int, int, str]]:
        await service.store.mark_failed(victim.id, "its file changed and could not be read")
        return await tags(guild_id)

    monkeypatch.setattr(service.store, "tags", tags_while_a_reindex_fails_a_track)
    hits = await service.recommend(GUILD, USER, "calm", k=3)
    assert 0 < len(hits) <= 3  # an answer from the library as it was read, not a KeyError
