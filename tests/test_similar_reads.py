"""/similar reads from the store only the rows of the index's candidates (and the query's very file), not the
whole library's ready tracks with their segment vectors and fingerprints (~39 KiB each), and answers exactly
as it does when handed the whole library, which is what it read before.

A real library (the bundled demo clips and 64 short generated songs), real analysis, a real SQLite file
and index. The store's read is wrapped to record which ids were asked for; the comparison hands /similar
every ready track instead of its candidates."""
from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

from core.cli.demo import DEMO_CLIPS
from core.config import Settings
from core.service import Service
from core.store import TrackRow
from tests.conftest import wav_bytes

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]
GUILD = 77
SONGS = 64


async def test_similar_reads_its_candidates_only_and_answers_as_with_the_whole_library(tmp_path: Path) -> None:
    folder = tmp_path / "music"
    shutil.copytree(DEMO_CLIPS, folder)
    for i in range(SONGS):  # 3 s each: one segment, so one query window reaches 64 of them at most
        (folder / f"song {i:02d}.wav").write_bytes(wav_bytes(3, freq=150 + 37 * i, seed=i))
    service = await Service.open(Settings(data_dir=tmp_path / "data", workers=1))
    try:
        report = await service.add_to_library(GUILD, [folder])
        assert not report.failed
        library = await service.store.tracks(GUILD, status="ready")
        assert len(library) == SONGS + 8
        queries = [DEMO_CLIPS / "supertux-chipdisko.ogg", folder / "song 07.wav", folder / "song 40.wav"]

        store = service.store
        read: list[set[int]] = []
        candidates_only = store.tracks_by_id

        async def recorded(guild_id: int, ids: Iterable[int], *, status: str | None = None) -> list[TrackRow]:
            ids = list(ids)
            read.append(set(ids))
            return await candidates_only(guild_id, ids, status=status)

        async def whole_library(guild_id: int, ids: Iterable[int], *,
                                status: str | None = None) -> list[TrackRow]:
            return await store.tracks(guild_id, status=status)

        store.tracks_by_id = recorded  # type: ignore[method-assign]
        answers = [(await service.similar(GUILD, q, k=5)).to_dict() for q in queries]
        store.tracks_by_id = whole_library  # type: ignore[method-assign]
        before = [(await service.similar(GUILD, q, k=5)).to_dict() for q in queries]

        assert answers == before
        assert [len(a["results"]) for a in answers] == [5, 5, 5]
        own = {q: a["same_recording"] for q, a in zip(queries, answers)}
        assert all(hit is not None and Path(hit["source"]).name == q.name for q, hit in own.items())
        assert len(read) == len(queries)
        assert all(len(ids) < len(library) for ids in read[1:])  # a short song's query: a few candidates
    finally:
        await service.close()
