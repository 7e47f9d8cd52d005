"""Stopping the bot as a service manager does: systemd, docker and Kubernetes send SIGTERM (to the main
process only, for docker and Kubernetes), and the bot must stop as cleanly as on Ctrl-C.

A real `cratedigger run` on the local Discord server, a real SQLite file, a real reindex in flight: the
analysis of one track is held until the process ends (tests.held_cratedigger), so the signal lands mid-
reindex whatever the machine's speed. The evidence of a clean stop: exit status 0 and the "stopped" line;
none of the bot's helper processes (analysis workers, chart renderer, multiprocessing's tracker) left
running; SQLite closed (its write-ahead log checkpointed and removed) and intact; the tracks the reindex
had finished kept, the previous index still served, the member's request still on record for the next
process to answer, and a rerun that analyses only what was left.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest

from core.cli.demo import DEMO_CLIPS
from tests.discord_server import FakeDiscord
from tests.processes import Process, process_env, start, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

CLIPS = sorted(p.name for p in DEMO_CLIPS.glob("*.ogg"))[:4]
HELD = CLIPS[-1]
"""The last track registered, so the reindex has finished the others when it reaches it."""


def _children(pid: int) -> dict[int, str]:
    """Every descendant of `pid` still running: {pid: its start time}, from /proc."""
    parents: dict[int, list[int]] = {}
    started: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
        started[int(entry.name)] = fields[19]
    out: dict[int, str] = {}
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        out[child] = started[child]
        todo.extend(parents.get(child, []))
    return out


def _running(pid: int, start_time: str) -> bool:
    """Whether that very process (not a later one given the same id) is still running."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0] != "Z" and fields[19] == start_time


def _sqlite(db: Path) -> contextlib.closing[sqlite3.Connection]:
    """A connection closed at the end of the block (sqlite3's own `with` only commits): while a reader
    has the file open, the bot's close is not the last one and SQLite keeps its write-ahead log."""
    return contextlib.closing(sqlite3.connect(db))


async def _left_running(children: dict[int, str], *, within: float = 30.0) -> list[str]:
    """The command lines of `children` still running once they have had `within` seconds to end: some end
    just after their parent (multiprocessing's resource tracker exits when it reads its parent's end of the
    pipe), an orphan never does."""
    names = {}
    for pid in children:
        with contextlib.suppress(OSError):
            names[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    for _ in range(int(within * 10)):
        left = [pid for pid, started in children.items() if _running(pid, started)]
        if not left:
            return []
        await asyncio.sleep(0.1)
    return [names.get(pid, str(pid)) for pid in left]


def _versions(db: Path) -> dict[str, str]:
    with _sqlite(db) as conn:
        return {source: version for source, version in conn.execute("SELECT source, analysis_version FROM tracks")}


async def _run_cli(args: list[str], env: dict[str, str], log: Path) -> dict:
    cli = start([*args, "--json"], env, log)
    assert await asyncio.to_thread(cli.popen.wait, 300) == 0, cli.text()
    return json.loads(log.read_text().splitlines()[-1])


async def test_sigterm_stops_the_bot_as_cleanly_as_ctrl_c_mid_reindex(tmp_path: Path) -> None:
    server = FakeDiscord()
    await server.start()
    guild = server.add_guild("Stops")
    music = tmp_path / "music"
    music.mkdir()
    for name in CLIPS:
        shutil.copy(DEMO_CLIPS / name, music / name)
    data_dir = tmp_path / "data"
    db = data_dir / "cratedigger.sqlite3"
    env = process_env(DISCORD_TOKEN=server.token, FAKE_DISCORD_API=server.api_base,
                      FAKE_DISCORD_GATEWAY=server.gateway_url, CRATEDIGGER_DATA_DIR=data_dir,
                      CRATEDIGGER_WORKERS=1, CRATEDIGGER_USER_COOLDOWN_SECONDS=0, HOLD_ANALYSIS=HELD)
    bot: Process | None = None
    try:
        # A library analysed on 8 segments a track: the bot's 16 make every track due for a reindex.
        added = await _run_cli(["library", "add", "--guild", str(guild.id), str(music)],
                               {**env, "CRATEDIGGER_LIBRARY_SEGMENTS": "8"}, tmp_path / "add.log")
        assert len(added["added"]) == len(CLIPS)
        with _sqlite(db) as conn:
            (served,), = conn.execute("SELECT MAX(version) FROM index_versions")

        sync = start(["sync-commands"], env, tmp_path / "sync.log", module="tests.routed_cratedigger")
        assert await asyncio.to_thread(sync.popen.wait, 180) == 0, sync.text()
        bot = start(["run"], env, tmp_path / "bot.log", module="tests.held_cratedigger")
        await server.wait_ready(timeout=180)
        ix = await server.slash(guild.members[server.owner.id], "library reindex")
        await bot.wait_for_log(f"holding the analysis of {HELD}", timeout=300)
        for _ in range(3000):  # until the reindex has committed every track but the held one
            if sum("segments=16" in v for v in _versions(db).values()) == len(CLIPS) - 1:
                break
            await asyncio.sleep(0.1)
        await bot.wait_for_log("ready as")  # (stopped before discord.py's own "ready", it logs an error)
        children = _children(bot.popen.pid)
        assert children  # the analysis worker, the renderer, multiprocessing's resource tracker

        os.kill(bot.popen.pid, signal.SIGTERM)  # the main process only, as docker and Kubernetes do
        code = await asyncio.to_thread(bot.popen.wait, 120)
        log = bot.text()
        assert code == 0, log[-3000:]
        assert "SIGTERM" in log and "stopped" in log.splitlines()[-1], log[-3000:]
        assert "Traceback" not in log and " ERROR " not in log, log[-3000:]  # a stop, not a failure
        assert await _left_running(children) == []

        assert not Path(f"{db}-wal").exists()  # SQLite closed: the log checkpointed into the file
        with _sqlite(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            (now_served,), = conn.execute("SELECT MAX(version) FROM index_versions")
            pending = conn.execute("SELECT interaction_id FROM pending_replies").fetchall()
        assert now_served == served  # the reindex never finished: the previous index still serves
        assert pending == [(ix.id,)]  # kept for the next process to tell the member
        versions = _versions(db)
        assert sorted(Path(s).name for s, v in versions.items() if "segments=16" in v) == CLIPS[:-1]

        rerun = await _run_cli(["library", "reindex", "--guild", str(guild.id)], env, tmp_path / "rerun.log")
        assert (rerun["analysed"], rerun["skipped"]) == (1, len(CLIPS) - 1)  # only what was left
    finally:
        if bot is not None:
            bot.stop()
        await server.stop()


def _two_clips(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """(a folder of two demo clips, the database, a CLI environment holding the second one's analysis)."""
    music = tmp_path / "music"
    music.mkdir()
    for name in CLIPS[:2]:
        shutil.copy(DEMO_CLIPS / name, music / name)
    data_dir = tmp_path / "data"
    env = process_env(CRATEDIGGER_DATA_DIR=data_dir, CRATEDIGGER_WORKERS=1, HOLD_ANALYSIS=CLIPS[1])
    return music, data_dir / "cratedigger.sqlite3", env


async def _sigterm_once_the_first_is_committed(cli: Process, db: Path) -> None:
    """Once the first clip is committed and the second held, SIGTERM the CLI; check it stopped cleanly: the
    shell's status for an end by SIGTERM (143) with one line on stderr, no helper process left, SQLite
    closed."""
    await cli.wait_for_log(f"holding the analysis of {CLIPS[1]}", timeout=300)
    for _ in range(3000):  # until the first track is committed and only the held one is left
        if sum("segments=16" in (v or "") for v in _versions(db).values()) == 1:
            break
        await asyncio.sleep(0.1)
    children = _children(cli.popen.pid)
    assert children
    os.kill(cli.popen.pid, signal.SIGTERM)
    code = await asyncio.to_thread(cli.popen.wait, 120)
    assert code == 128 + signal.SIGTERM, cli.text()[-3000:]
    assert cli.text().splitlines()[-1] == "cratedigger: stopped (SIGTERM)"
    assert "Traceback" not in cli.text()
    assert await _left_running(children) == []
    assert not Path(f"{db}-wal").exists()


async def test_sigterm_stops_a_cli_reindex_as_ctrl_c_does(tmp_path: Path) -> None:
    """`cratedigger library reindex` from a timer unit or a container job: the same clean stop."""
    music, db, env = _two_clips(tmp_path)
    await _run_cli(["library", "add", str(music)], {**env, "CRATEDIGGER_LIBRARY_SEGMENTS": "8"},
                   tmp_path / "add.log")
    cli = start(["library", "reindex"], env, tmp_path / "reindex.log", module="tests.held_cratedigger")
    try:
        await _sigterm_once_the_first_is_committed(cli, db)
        assert sum("segments=16" in v for v in _versions(db).values()) == 1  # the finished track kept
    finally:
        cli.stop()


async def test_sigterm_stops_a_cli_add_as_ctrl_c_does(tmp_path: Path) -> None:
    """`cratedigger library add` analyses each track as soon as it is registered, while its workers are
    still starting (core.library.Intake): stopped with one track analysed and one in flight, it ends the
    same clean way, keeps the finished track and leaves the other pending for the next reindex."""
    music, db, env = _two_clips(tmp_path)
    cli = start(["library", "add", str(music)], env, tmp_path / "add.log", module="tests.held_cratedigger")
    try:
        await _sigterm_once_the_first_is_committed(cli, db)
        with _sqlite(db) as conn:
            rows = conn.execute("SELECT source, status FROM tracks").fetchall()
        assert {Path(source).name: status for source, status in rows} == {CLIPS[0]: "ready",
                                                                          CLIPS[1]: "pending"}
    finally:
        cli.stop()


async def test_sigterm_stops_an_analysis_worker_with_its_pool(tmp_path: Path, redis_url: str) -> None:
    """`cratedigger worker` (arq stops it on SIGTERM, letting running jobs finish): its pool's processes end
    with it, sent to the main process only."""
    worker = start_worker(tmp_path / "worker.log", tmp_path / "data", redis_url, CRATEDIGGER_WORKERS=1)
    try:
        await worker.wait_for_log("worker ready", timeout=300)
        children = _children(worker.popen.pid)
        assert children  # the pool's process (it loaded the models to say which)
        os.kill(worker.popen.pid, signal.SIGTERM)
        code = await asyncio.to_thread(worker.popen.wait, 120)
        assert code == 0, worker.text()[-3000:]
        assert await _left_running(children) == []
    finally:
        worker.stop()
