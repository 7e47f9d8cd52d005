"""The whole scale-out deployment on this machine, every part real and in its own process:

    PostgreSQL ─┬─ bot process, shard 0 of 2 ─┐
    Redis ──────┼─ bot process, shard 1 of 2 ─┼── local Discord server (this test)
                └─ `cratedigger worker` ──────┘ (killed with SIGKILL mid-reindex, then a new one)

Members of a guild on each shard add tracks, reindex, ask for similar tracks and recommendations. Each bot
has its own data folder: they share only the database and the queue. The worker is killed while the
reindex is analysing; the reindex completes once a new worker has started, with every track analysed
once, none lost and none doubled.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from core.cli.demo import DEMO_CLIPS
from core.frontend import EMBEDDING_DIM
from tests.discord_server import MANAGE_GUILD, FakeDiscord, Guild, InteractionRecord, Member, MessageRecord
from tests.processes import Process, process_env, start, start_worker
from tests.servers import Redis

pytestmark = pytest.mark.slow
CLIPS = sorted(DEMO_CLIPS.glob("*.ogg"))
SHARD_CLIPS = {0: CLIPS[:5], 1: CLIPS[5:]}


@dataclass
class Deployment:
    server: FakeDiscord
    db_url: str
    broker_url: str
    folder: Path
    guilds: dict[int, Guild] = field(default_factory=dict)
    admins: dict[int, Member] = field(default_factory=dict)
    bots: list[Process] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)

    def env(self, name: str, **settings: object) -> dict[str, str]:
        return process_env(CRATEDIGGER_DATABASE_URL=self.db_url, CRATEDIGGER_BROKER_URL=self.broker_url,
                           CRATEDIGGER_DATA_DIR=self.folder / name, CRATEDIGGER_WORKERS=1,
                           CRATEDIGGER_USER_COOLDOWN_SECONDS=0, CRATEDIGGER_TASK_TIMEOUT_SECONDS=60,
                           DISCORD_TOKEN=self.server.token, FAKE_DISCORD_API=self.server.api_base,
                           FAKE_DISCORD_GATEWAY=self.server.gateway_url, **settings)

    def bot_command(self, name: str, *args: str, **settings: object) -> Process:
        return start(list(args), self.env(name, **settings), self.folder / f"{name}.log",
                     module="tests.routed_cratedigger")

    def new_worker(self) -> Process:
        n = len(self.workers)
        self.workers.append(start_worker(self.folder / f"worker{n}.log", self.folder / f"worker{n}",
                                         self.broker_url, CRATEDIGGER_WORKERS=1,
                                         CRATEDIGGER_TASK_TIMEOUT_SECONDS=60))
        return self.workers[-1]

    async def run(self, shard: int, command: str, *, timeout: float = 180.0,
                  **options: object) -> tuple[InteractionRecord, MessageRecord]:
        """The command's answer: its reply once that holds an embed, since progress comes first."""
        ix = await self.server.slash(self.admins[shard], command, **options)
        await self.server.wait_for(lambda: bool(ix.refused) or bool(ix.messages) and bool(ix.last().embeds),
                                   timeout=timeout)
        message = ix.last()
        assert not ix.refused, ix.refused
        assert ix.shard == shard  # dispatched to that shard's session, so to that bot process only
        return ix, message

    async def rows(self, sql: str, *params: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.db_url)
        try:
            return list(await conn.fetch(sql, *params))
        finally:
            await conn.close()


@pytest_asyncio.fixture
async def deployment(pg_url: str, redis_server: Redis, tmp_path: Path) -> AsyncIterator[Deployment]:
    redis_server.flush()
    server = FakeDiscord(shard_count=2, ack_deadline=None)  # no race with the machine's load
    await server.start()
    world = Deployment(server, pg_url, redis_server.url(5), tmp_path)
    for shard in (0, 1):
        guild = world.guilds[shard] = server.add_guild(f"Guild on shard {shard}", shard=shard)
        world.admins[shard] = guild.add_member(server.add_user(f"admin{shard}"),
                                               [guild.add_role("Mods", MANAGE_GUILD)])
    try:
        await world.new_worker().wait_for_log("worker ready")
        sync = world.bot_command("sync", "sync-commands")
        assert await asyncio.to_thread(sync.popen.wait, 120) == 0, sync.text()
        for shard in (0, 1):
            world.bots.append(world.bot_command(f"bot{shard}", "run", CRATEDIGGER_SHARD_COUNT=2,
                                                CRATEDIGGER_SHARD_IDS=shard))
        await server.wait_shards(timeout=180)
        yield world
    finally:
        for proc in world.bots + world.workers:
            proc.stop()
        await server.stop()


async def test_two_shards_one_queue_one_database_survive_a_killed_worker(deployment: Deployment) -> None:
    world, server = deployment, deployment.server
    for shard in (0, 1):
        await world.bots[shard].wait_for_log(f"on shards [{shard}] of 2")

    async def add_all(shard: int) -> None:
        for clip in SHARD_CLIPS[shard]:
            _, message = await world.run(shard, "library add",
                                         file=server.attachment(clip.name, clip.read_bytes()))
            assert "Added (1)" in message.text(), message.text()

    await asyncio.gather(add_all(0), add_all(1))

    # A full reindex on shard 0; the worker is killed with SIGKILL while it analyses one of its tracks.
    killed = world.workers[0]
    started_before = killed.text().count(":run_task(")
    reindex = await server.slash(world.admins[0], "library reindex", full=True)
    for _ in range(1200):
        if killed.text().count(":run_task(") > started_before:
            break
        await asyncio.sleep(0.05)
    killed.kill()
    assert "Reindex finished" not in (reindex.original.text() if reindex.original else "")
    replacement = world.new_worker()
    await server.wait_for(lambda: bool(reindex.messages and reindex.last().embeds), timeout=300)
    fields = {f["name"]: f["value"] for f in reindex.last().embeds[0]["fields"]}
    assert fields["analysed"] == "5" and fields["in the index"] == "5" and "failed (" not in str(fields)
    assert "try 2" in replacement.text()  # the job the killed worker held ran again

    for shard in (0, 1):  # nothing lost, nothing doubled: one ready row per clip, in its own guild
        rows = await world.rows("SELECT title, status, analysis_version FROM tracks WHERE guild_id = $1",
                                world.guilds[shard].id)
        assert sorted(r["title"] for r in rows) == sorted(c.stem for c in SHARD_CLIPS[shard])
        assert {r["status"] for r in rows} == {"ready"}
        newest = await world.rows("SELECT count FROM index_versions WHERE guild_id = $1 "
                                  "ORDER BY version DESC LIMIT 1", world.guilds[shard].id)
        stored = await world.rows("SELECT SUM(octet_length(segment_embeddings)) AS bytes FROM tracks "
                                  "WHERE guild_id = $1", world.guilds[shard].id)
        assert newest[0]["count"] == stored[0]["bytes"] // (4 * EMBEDDING_DIM)  # each segment once

    for shard in (0, 1):
        probe = SHARD_CLIPS[shard][0]
        _, similar = await world.run(shard, "similar", file=server.attachment("probe.ogg", probe.read_bytes()))
        shown = similar.embeds[0]["description"]
        assert similar.embeds[0]["title"].startswith("Tracks like"), similar.text()
        assert probe.stem in shown.split("\n")[0]  # the same recording, first
        assert not any(c.stem in shown for c in SHARD_CLIPS[1 - shard])  # the other guild's tracks
        _, picks = await world.run(shard, "recommend", mood="calm", count=3)
        offered = [o["value"] for o in picks.component("cd:rate")["options"]]
        assert len(offered) == 6, picks.text()

    # Each bot loaded its guild's index from the database into its own cache; neither read the other's.
    for shard in (0, 1):
        cache = world.folder / f"bot{shard}" / "index-cache"
        assert (cache / f"guild-{world.guilds[shard].id}").is_dir()
        assert not (cache / f"guild-{world.guilds[1 - shard].id}").exists()
    import redis.asyncio as aioredis

    queue = aioredis.from_url(world.broker_url)
    try:
        assert await queue.zcard("cratedigger:analysis") == 0  # every job finished
    finally:
        await queue.aclose()
