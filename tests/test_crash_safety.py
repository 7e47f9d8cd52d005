"""Kill the process with SIGKILL at random moments of a reindex and of tag writes; afterwards the database
passes integrity_check, the index loads, no committed tag is lost, and a rerun completes."""
from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.cli.demo import DEMO_CLIPS
from core.index import load_index
from core.segment_match import SEGMENT_KIND, track_of
from core.store import Store
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _cli(data: Path, *args: str, json_out: bool = True) -> subprocess.Popen[str]:
    """The CLI; without `json_out` it draws its progress bar on stderr, redrawn at every track."""
    return subprocess.Popen(
        [sys.executable, "-m", "core", "--data-dir", str(data), *(["--json"] if json_out else []), *args],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "CRATEDIGGER_WORKERS": "2", "TQDM_MININTERVAL": "0", "TQDM_MINITERS": "1"},
    )


def _wait_for_progress(proc: subprocess.Popen[str], done: int, total: int) -> None:
    """Read the progress bar until it shows `done` of `total` tracks analysed."""
    assert proc.stderr is not None
    seen = ""
    while chunk := os.read(proc.stderr.fileno(), 4096):
        seen += chunk.decode(errors="replace")
        counts = [int(n) for n in re.findall(rf"\b(\d+)/{total}\b", seen)]
        if counts and counts[-1] >= done:
            return
    raise AssertionError(f"the reindex ended before {done}/{total} were analysed:\n{seen[-2000:]}")


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
    """Each kill lands at a point read off the reindex's own progress bar (0 to 5 of the 8 tracks analysed,
    so at least three analyses and the publish are still to come), not after a guessed share of the time an
    earlier run took: a run faster than that one was killed after its publish."""
    data = tmp_path / "data"
    clips = tmp_path / "clips"
    shutil.copytree(DEMO_CLIPS, clips)
    first = _cli(data, "library", "add", str(clips))
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert len(json.loads(out)["added"]) == 8
    index_folder = data / "index" / "guild-0"
    served = (index_folder / "CURRENT").read_text()

    rng = random.Random(1234)
    for _ in range(3):
        proc = _cli(data, "library", "reindex", "--full", json_out=False)
        _wait_for_progress(proc, rng.randint(0, 5), 8)
        _kill_group(proc)
        assert _integrity(data / "cratedigger.sqlite3") == "ok"
        index = load_index(index_folder, expected_kind=SEGMENT_KIND)  # the previous index still loads
        assert np.unique(track_of(index.ids())).size == 8
        assert (index_folder / "CURRENT").read_text() == served  # killed before its publish

    rerun = _cli(data, "library", "reindex")
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    report = json.loads(out)
    assert report["index_size"] == 8 and not report["failed"]
    assert _ready(data / "cratedigger.sqlite3") == 8
    assert np.unique(track_of(load_index(index_folder, expected_kind=SEGMENT_KIND).ids())).size == 8


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
        assert proc.stdout is not None
        first = proc.stdout.readline()  # writing has begun (how long start-up takes is the machine's affair)
        assert first.strip().isdigit(), f"the writer ended before its first commit: {first!r}"
        time.sleep(rng.uniform(0.0, 1.5))  # then a kill somewhere amid its writes
        _kill_group(proc)
        confirmed = [int(line) for line in (first + proc.stdout.read()).split()]
        assert _integrity(db) == "ok"
        with sqlite3.connect(db) as raw:
            stored = {int(r[0]) for r in raw.execute("SELECT user_id FROM mood_tags")}
        assert set(confirmed) <= stored  # every tag reported as committed is there
        with sqlite3.connect(db) as raw:
            raw.execute("DELETE FROM mood_tags")
