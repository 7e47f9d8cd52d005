"""A bot process killed while it works on a request: the process started in its place tells the member the
request was lost, through the interaction's token, instead of leaving them "thinking…" until it dies.

Real processes (`cratedigger run` against the local Discord server), a real SQLite file shared by the two
in turn; the request is held on purpose by a song server that sends its audio slowly, so the kill lands
while the bot downloads, whatever the machine's speed."""
from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import wav_bytes
from tests.discord_server import FakeDiscord
from tests.http_fixture import LocalHTTPServer
from tests.processes import Process, process_env, start

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


def pending_rows(data_dir: Path) -> list[tuple]:
    with sqlite3.connect(data_dir / "cratedigger.sqlite3") as db:
        return db.execute("SELECT interaction_id, process FROM pending_replies").fetchall()


async def test_a_request_held_by_a_killed_bot_is_told_lost_by_its_successor(tmp_path: Path) -> None:
    server = FakeDiscord()
    await server.start()
    songs = LocalHTTPServer().start()
    guild = server.add_guild("Restarts")
    member = guild.add_member(server.add_user("listener"))
    slow = songs.add_file("slow/song.wav", wav_bytes(8, freq=330, seed=2), "audio/wav", drip_seconds=300)
    data_dir = tmp_path / "data"
    env = process_env(DISCORD_TOKEN=server.token, FAKE_DISCORD_API=server.api_base,
                      FAKE_DISCORD_GATEWAY=server.gateway_url, CRATEDIGGER_DATA_DIR=data_dir,
                      CRATEDIGGER_WORKERS=1, CRATEDIGGER_USER_COOLDOWN_SECONDS=0,
                      CRATEDIGGER_FETCH_ALLOW_HOSTS=songs.netloc)
    bots: list[Process] = []

    def bot(name: str) -> Process:
        bots.append(start(["run"], env, tmp_path / f"{name}.log", module="tests.routed_cratedigger"))
        return bots[-1]

    try:
        sync = start(["sync-commands"], env, tmp_path / "sync.log", module="tests.routed_cratedigger")
        assert await asyncio.to_thread(sync.popen.wait, 180) == 0, sync.text()
        first = bot("first")
        await server.wait_ready(timeout=180)
        ix = await server.slash(member, "genre", link=slow)
        await server.wait_for(lambda: bool(ix.callbacks), timeout=60)  # acknowledged: "thinking…"
        for _ in range(1800):  # until the bot is downloading the song, which the server holds back
            if "/slow/song.wav" in songs.paths_requested():
                break
            await asyncio.sleep(0.1)
        assert "/slow/song.wav" in songs.paths_requested()
        assert len(pending_rows(data_dir)) == 1  # written down when it was acknowledged
        first.kill()  # SIGKILL, with its worker pool: it cannot answer
        assert ix.messages == [] and ix.original is not None and ix.original.loading

        second = bot("second")
        await server.wait_for(lambda: bool(ix.messages), timeout=180)
        assert "lost it; please send it again" in ix.last().content
        assert not ix.refused
        assert pending_rows(data_dir) == []  # taken, so no later process tells it twice

        await second.wait_for_log("told 1 members")
        await server.wait_ready(timeout=180)  # it told the member before it connected to the gateway
        history = await server.slash(member, "history")  # a request that ends normally
        await server.reply(history, timeout=60)
        for _ in range(600):  # crossed out once the command has ended, just after its answer was sent
            if not pending_rows(data_dir):
                break
            await asyncio.sleep(0.1)
        assert pending_rows(data_dir) == []
    finally:
        for proc in bots:
            proc.stop()
        songs.stop()
        await server.stop()
