"""The use cases end to end on a real SQLite file, real audio, the shipped models and a real index.

The bundled demo clips are the library, so these run on a fresh clone without the team's data.
"""
from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from core.cli.demo import DEMO_CLIPS
from core.config import Settings
from core.errors import Busy, EmptyLibrary, UnknownMood, UnknownTrack, UnsupportedAudio
from core.shelf import index_dir
from core.service import Service, Upload
from tests.audio_files import write_audio
from tests.conftest import synth_tone

pytestmark = pytest.mark.asyncio(loop_scope="module")
GUILD, OTHER_GUILD, ALICE, BOB = 10, 20, 1001, 1002


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    data = tmp_path_factory.mktemp("data")
    svc = await Service.open(Settings(data_dir=data, workers=2, queue_size=8))
    report = await svc.add_to_library(GUILD, [DEMO_CLIPS], added_by=ALICE)
    assert len(report.added) == len(list(DEMO_CLIPS.glob("*.ogg"))) and not report.failed
    yield svc
    await svc.close()


async def test_library_is_analysed_and_indexed(service: Service) -> None:
    stats = await service.library_stats(GUILD)
    assert stats["ready"] == stats["tracks"] == stats["indexed"] == 8
    rows = await service.store.tracks(GUILD)
    assert all(r.embedding is not None and r.duration and r.duration > 10 for r in rows)


async def test_adding_again_detects_duplicates(service: Service) -> None:
    report = await service.add_to_library(GUILD, [DEMO_CLIPS / "etr-race1.ogg"])
    assert report.added == [] and len(report.duplicates) == 1
    upload = Upload("copy.ogg", (DEMO_CLIPS / "etr-race1.ogg").read_bytes())  # same bytes, other name
    report = await service.add_to_library(GUILD, [upload])
    assert report.added == [] and report.duplicates == ["upload:copy.ogg"]


async def test_classify_an_upload(service: Service, tmp_path: Path) -> None:
    path = write_audio(tmp_path / "clip.mp3", synth_tone(7.0))
    report = await service.classify(Upload("clip.mp3", path.read_bytes()), guild_id=GUILD, user_id=ALICE)
    assert report.segments == 2 and report.file == "clip.mp3"
    if report.genre is not None:
        assert abs(sum(report.top and dict(report.top).values()) - 1) < 1.0
        assert report.confidence == max(p for _, p in report.top)
    assert not any((service.settings.data_dir / "tmp").iterdir())  # the staged upload is gone


async def test_bad_upload_is_a_user_error_and_leaves_nothing(service: Service) -> None:
    before = await service.store.tracks(GUILD)
    with pytest.raises(UnsupportedAudio):
        await service.classify(Upload("song.mp3", b"not audio at all" * 100))
    with pytest.raises(UnsupportedAudio, match="exe"):
        await service.classify(Upload("x.exe", b"MZ"))
    report = await service.add_to_library(GUILD, [Upload("broken.ogg", b"OggS" + bytes(500))])
    assert report.added == [] and report.failed[0][0] == "upload:broken.ogg"
    assert [r.id for r in await service.store.tracks(GUILD)] == [r.id for r in before]  # no row left behind
    assert not list((service.settings.data_dir / "audio").rglob("*.ogg.part"))


async def test_similar_names_the_query_itself_first_as_already_in_the_library(service: Service) -> None:
    probe = DEMO_CLIPS / "supertux-chipdisko.ogg"
    report = await service.similar(GUILD, probe, k=3, user_id=BOB)
    assert len(report.results) == 3
    same = report.same_recording
    assert same is not None and "chipdisko" in same.source and report.results[0] is same
    assert same.reason.startswith(f"this is {same.title}, already in the library")
    others = report.results[1:]
    assert all("chipdisko" not in hit.source and not hit.same_recording for hit in others)
    assert all(hit.reason and "already in the library" not in hit.reason for hit in others)
    assert [h.score for h in others] == sorted((h.score for h in others), reverse=True)
    assert report.to_dict()["same_recording"]["track_id"] == same.track_id


@pytest.mark.parametrize(("suffix", "gain"), [(".mp3", 1.0), (".opus", 0.3)])
async def test_similar_recognises_a_reencoded_excerpt_of_a_library_track(service: Service, tmp_path: Path,
                                                                          suffix: str, gain: float) -> None:
    """A re-encoded (and quieter) part of a library track is that recording: its fingerprint matched."""
    import soundfile as sf

    y, sr = sf.read(DEMO_CLIPS / "lincity-city-blues.ogg", dtype="float32")
    excerpt = write_audio(tmp_path / f"excerpt{suffix}", gain * y[2 * sr: 12 * sr], sr=sr)
    report = await service.similar(GUILD, excerpt, k=3)
    same = report.same_recording
    assert same is not None and "lincity-city-blues" in same.source and report.results[0] is same
    assert same.reason.startswith(f"this is {same.title}, already in the library")
    assert not any(hit.same_recording for hit in report.results[1:])


async def test_similar_calls_no_other_track_the_same_recording(service: Service) -> None:
    """A track that is not in the library finds neighbours, none of them called its recording."""
    rows = await service.store.tracks(GUILD, status="ready")
    probe = next(r for r in rows if "speeditup" in r.source)
    await service.store.remove_track(GUILD, probe.id)
    await service.library.rebuild_index(GUILD)
    try:
        report = await service.similar(GUILD, Path(probe.audio_path), k=7)
        assert len(report.results) == 7 and report.same_recording is None
        assert all("speeditup" not in h.source for h in report.results)
    finally:
        await service.add_to_library(GUILD, [Path(probe.audio_path)])


async def test_recommend_personalises_and_respects_thumbs_down(service: Service) -> None:
    first = await service.recommend(GUILD, ALICE, "calm", k=3)
    assert len(first) == 3 and all(h.reason for h in first)
    await service.feedback(GUILD, ALICE, first[0].track_id, up=False)
    tagged = (await service.store.tracks(GUILD, status="ready"))[-1]
    await service.tag(GUILD, ALICE, tagged.id, "Calm")
    again = await service.recommend(GUILD, ALICE, "calm", k=8)
    ids = [h.track_id for h in again]
    assert first[0].track_id not in ids
    assert ids[0] == tagged.id and "you" in again[0].reason


async def test_unknown_mood_lists_the_valid_ones(service: Service) -> None:
    with pytest.raises(UnknownMood, match="calm"):
        await service.recommend(GUILD, ALICE, "spicy")


async def test_unknown_track_and_other_guilds(service: Service) -> None:
    track = (await service.store.tracks(GUILD))[0]
    with pytest.raises(UnknownTrack):
        await service.tag(OTHER_GUILD, ALICE, track.id, "calm")  # a track of another guild is unknown here
    with pytest.raises(EmptyLibrary, match="library add"):
        await service.recommend(OTHER_GUILD, ALICE, "calm")
    with pytest.raises(EmptyLibrary):
        await service.similar(OTHER_GUILD, DEMO_CLIPS / "etr-race1.ogg")
    assert await service.find_tracks(OTHER_GUILD, "") == []


async def test_history_and_forget_me(service: Service) -> None:
    await service.recommend(GUILD, BOB, "happy", k=2)
    track = (await service.store.tracks(GUILD))[1]
    await service.tag(GUILD, BOB, track.id, "happy")
    await service.feedback(GUILD, BOB, track.id, up=True)
    kinds = {item.kind for item in await service.history(GUILD, BOB)}
    assert {"recommended", "tag", "feedback", "similar"} <= kinds
    assert await service.forget_user(GUILD, BOB) > 0
    with sqlite3.connect(service.settings.db_path) as raw:
        for table in ("mood_tags", "feedback", "history"):
            assert raw.execute(f"SELECT COUNT(*) FROM {table} WHERE user_id = ?", (BOB,)).fetchone()[0] == 0


async def test_reindex_skips_what_is_up_to_date_and_full_redoes_all(service: Service) -> None:
    report = await service.reindex(GUILD)
    assert report.analysed == 0 and report.skipped >= 8 and report.index_size == 8
    served = (index_dir(service.settings, GUILD) / "CURRENT").read_text()
    report = await service.reindex(GUILD, full=True)
    assert report.analysed >= 8 and report.index_size == 8
    assert (index_dir(service.settings, GUILD) / "CURRENT").read_text() != served  # a new index swapped in


async def test_a_full_queue_answers_busy(service: Service, tmp_path: Path) -> None:
    path = write_audio(tmp_path / "clip.wav", synth_tone(30.0))
    jobs = [asyncio.ensure_future(service.classify(path)) for _ in range(service.settings.queue_size + 4)]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    busy = [r for r in results if isinstance(r, Busy)]
    done = [r for r in results if not isinstance(r, BaseException)]
    assert len(busy) == 4 and len(done) == service.settings.queue_size
    assert all(b.retry_after > 0 and "try again" in str(b) for b in busy)
