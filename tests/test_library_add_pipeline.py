"""An add analyses each track as soon as it is registered: the first track's analysis starts while the last
file is still being registered, instead of every file being hashed, read for tags and inserted first with
both cores idle. The guarantees of an add stay: duplicates refused at registration, the index rebuilt once,
the progress total growing with the tracks taken, and an add stopped halfway leaving no analysis running.

A real service (its worker pool and the shipped models), the bundled demo clips, a real SQLite file. The
order is made on purpose, never raced: the last file's hashing waits until the first analysis has started
(with the add analysing only after registering, that wait runs out and the test fails)."""
from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

import core.library
from core.cli.demo import DEMO_CLIPS
from core.config import Settings
from core.config import DEFAULT_MODELS_DIR
from core.service import Service
from tests.processes import process_env, start

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

GUILD = 5
CLIPS = sorted(DEMO_CLIPS.glob("*.ogg"))[:3]
NEVER_SEEN_S = 120.0
"""How long the last file's hashing waits for the first analysis: only an add that analyses nothing before
registering everything runs it out."""


@pytest_asyncio.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    svc = await Service.open(Settings(data_dir=tmp_path / "data", workers=1))
    try:
        yield svc
    finally:
        await svc.close()


def music_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "music"
    folder.mkdir()
    for clip in CLIPS:
        shutil.copy(clip, folder / clip.name)
    shutil.copy(CLIPS[0], folder / "z same bytes again.ogg")  # registered last, refused as a duplicate
    return folder


async def test_the_first_track_is_analysed_while_the_last_is_still_registered(
        service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = music_folder(tmp_path)
    events: list[str] = []
    first_analysis = threading.Event()
    real_hash, real_analyser = core.library.file_hash, service.library.analyser

    def file_hash(path: Path) -> str:
        if path.name == "z same bytes again.ogg":
            events.append("last file: hashing waits")
            if first_analysis.wait(NEVER_SEEN_S):
                events.append("last file: hashing goes on")
        digest = real_hash(path)
        events.append(f"hashed {path.name}")
        return digest

    async def analyser(path: Path) -> core.library.ClipAnalysis:
        events.append(f"analysis starts {path.name}")
        first_analysis.set()
        return await real_analyser(path)

    monkeypatch.setattr(core.library, "file_hash", file_hash)
    monkeypatch.setattr(service.library, "analyser", analyser)
    progress: list[tuple[int, int]] = []
    report = await service.add_to_library(GUILD, [folder],
                                          progress=lambda done, total: progress.append((done, total)))

    assert events.index(f"analysis starts {CLIPS[0].name}") < events.index("hashed z same bytes again.ogg")
    assert "last file: hashing goes on" in events, events
    assert [Path(a.source).name for a in report.added] == [c.name for c in CLIPS]
    assert report.duplicates == [str((folder / "z same bytes again.ogg").resolve())]
    assert not report.failed and not report.already_there
    stats = await service.library_stats(GUILD)
    assert (stats["tracks"], stats["ready"], stats["indexed"]) == (3, 3, 3)
    # the total grows with the tracks taken; done never passes it and ends at it
    assert progress[0] == (0, 1) and progress[-1] == (3, 3)
    assert all(done <= total for done, total in progress)
    assert [total for _, total in progress] == sorted(total for _, total in progress)


async def test_an_add_stopped_halfway_leaves_no_analysis_running(
        service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelled (Ctrl-C, SIGTERM: core.stopping) while two analyses are in flight: both end with the add,
    the track finished before is kept, the others stay pending for the next reindex. (One worker takes two
    tracks at a time: the third track's analysis starts once the first's is committed.)"""
    both_held = asyncio.Event()
    held: list[str] = []
    ended: list[str] = []
    real_analyser = service.library.analyser

    async def analyser(path: Path) -> core.library.ClipAnalysis:
        if path.name != CLIPS[0].name:
            held.append(path.name)
            if len(held) == 2:
                both_held.set()
            try:
                await asyncio.Event().wait()  # never set: only the cancellation ends it
            finally:
                ended.append(path.name)
        return await real_analyser(path)

    monkeypatch.setattr(service.library, "analyser", analyser)
    add = asyncio.create_task(service.add_to_library(GUILD, [music_folder(tmp_path)]))
    await both_held.wait()
    add.cancel()
    with pytest.raises(asyncio.CancelledError):
        await add
    assert sorted(ended) == sorted(c.name for c in CLIPS[1:])  # both held analyses ended with the add
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith(f"add-{GUILD}-")]
    statuses = {Path(r.source).name: r.status for r in await service.store.tracks(GUILD)}
    assert statuses[CLIPS[0].name] == "ready"
    assert [statuses[c.name] for c in CLIPS[1:]] == ["pending", "pending"]


async def test_an_add_whose_workers_cannot_name_their_models_leaves_nothing_behind(tmp_path: Path) -> None:
    """The command line registers while its workers start; when they then fail (a front-end artefact made
    for another version of the code), the add fails as it did when the service refused to open, and the
    tracks it had registered are taken out again: adding them once that is fixed adds them."""
    models = tmp_path / "models"
    models.mkdir()
    for artefact in DEFAULT_MODELS_DIR.iterdir():
        (models / artefact.name).symlink_to(artefact)
    sidecar = models / "frontend_msd_musicnn.json"
    meta = json.loads(sidecar.read_text())
    sidecar.unlink()
    sidecar.write_text(json.dumps({**meta, "version": meta["version"] + 1}))
    data = tmp_path / "data"
    cli = start(["library", "add", str(CLIPS[0])],
                process_env(CRATEDIGGER_DATA_DIR=data, CRATEDIGGER_WORKERS=1, CRATEDIGGER_MODELS_DIR=models),
                tmp_path / "add.log")
    code = await asyncio.to_thread(cli.popen.wait, 300)
    assert code != 0 and "artefact version" in cli.text(), cli.text()[-3000:]
    with sqlite3.connect(data / "cratedigger.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM tracks").fetchone() == (0,)
