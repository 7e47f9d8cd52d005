"""Kill the process with SIGKILL at random moments of a reindex and of tag writes; afterwards the database
passes integrity_check, the index loads, no committed tag is lost, and a rerun completes."""
from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.cli.demo import DEMO_CLIPS
from core.embedding import EMBEDDING_KIND
from core.index import load_index
from core.store import Store
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _cli(data: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "core", "--data-dir", str(data), "--json", *args],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "CRATEDIGGER_WORKERS": "2"},
    )


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the CLI and its worker processes, as an OOM killer or a power cut would."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _integrity(db: Path) -> str:
    with sqlite3.connect(db) as raw:
        return raw.execute("PRAGMA integrity_check").fetchone()[0]


def _ready(db: Path) -> int:
    with sqlite3.connect(db) as raw:
        return raw.execute("SELECT COUNT(*) FROM tracks WHERE status = 'ready'").fetchone()[0]


def test_reindex_killed_at_random_points_recovers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    clips = tmp_path / "clips"
    shutil.copytree(DEMO_CLIPS, clips)
    started = time.monotonic()
    first = _cli(data, "library", "add", str(clips))
    out, err = first.communicate(timeout=600)
    took = time.monotonic() - started  # a full reindex does the same work: start-up, 8 analyses, publish
    assert first.returncode == 0, err
    assert len(json.loads(out)["added"]) == 8
    index_folder = data / "index" / "guild-0"
    served = (index_folder / "CURRENT").read_text()

    rng = random.Random(1234)
    for attempt in range(3):
        proc = _cli(data, "library", "reindex", "--full")
        time.sleep(rng.uniform(0.2, 0.7) * took)  # start-up, then somewhere before the publish
        killed_while_running = proc.poll() is None
        _kill_group(proc)
        assert _integrity(data / "cratedigger.sqlite3") == "ok"
        index = load_index(index_folder, expected_kind=EMBEDDING_KIND)  # the previous index still loads
        assert len(index) == 8
        if killed_while_running:
            assert (index_folder / "CURRENT").read_text() == served or attempt > 0

    rerun = _cli(data, "library", "reindex")
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    report = json.loads(out)
    assert report["index_size"] == 8 and not report["failed"]
    assert _ready(data / "cratedigger.sqlite3") == 8
    assert len(load_index(index_folder, expected_kind=EMBEDDING_KIND)) == 8


def test_tag_writes_killed_at_random_points_lose_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite3"

    async def one_track() -> int:
        store = await Store.open(db)
        try:
            return await store.add_track(guild_id=1, source="s", audio_path="s", content_hash="h",
                                         file_size=1, file_mtime=1.0, title="t", artist=None, added_by=None)
        finally:
            await store.close()

    track_id = asyncio.run(one_track())
    rng = random.Random(99)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-m", "tests.crash_tag_writer", str(db), str(track_id)],
                                cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(rng.uniform(1.5, 3.0))
        _kill_group(proc)
        confirmed = [int(line) for line in proc.stdout.read().split()]  # type: ignore[union-attr]
        assert confirmed, "the writer committed nothing before it was killed"
        assert _integrity(db) == "ok"
        with sqlite3.connect(db) as raw:
            stored = {int(r[0]) for r in raw.execute("SELECT user_id FROM mood_tags")}
        assert set(confirmed) <= stored  # every tag reported as committed is there
        with sqlite3.connect(db) as raw:
            raw.execute("DELETE FROM mood_tags")
