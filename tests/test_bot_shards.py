"""Sharding against the local Discord server with the real discord.py client: the server hands out shards
(GET /gateway/bot), checks IDENTIFY's `shard` and routes each guild's events to its shard's session only;
the bot runs the shards CRATEDIGGER_SHARD_IDS names, or all of them."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import discord
import pytest

from bot.app import CratediggerBot, ShardedCratediggerBot, make_bot
from core.config import Settings, load_settings
from tests.discord_server import FakeDiscord, connected, routed_to


@contextlib.asynccontextmanager
async def discord_with(shard_count: int) -> AsyncIterator[FakeDiscord]:
    """A local Discord server that requires `shard_count` shards, with the client routed to it."""
    server = FakeDiscord(shard_count=shard_count, ack_deadline=None)  # no race with the machine's load
    await server.start()
    try:
        with routed_to(server):
            yield server
    finally:
        await server.stop()


def _settings(server: FakeDiscord, tmp_path: Path, **sharding: object) -> Settings:
    return Settings(data_dir=tmp_path, discord_token=server.token, **sharding)  # type: ignore[arg-type]


def _bot(settings: Settings) -> CratediggerBot:
    return make_bot(settings, service_enabled=False, guild_ready_timeout=0.05)


async def _sync_here(server: FakeDiscord, guild_owner: object) -> None:
    ix = await server.slash(guild_owner, "sync", scope="here")  # type: ignore[arg-type]
    message = await server.reply(ix)
    assert "Synced" in message.content, message.content
    assert not ix.refused, ix.refused  # one bot answered: the guild's shard's


async def test_two_processes_worth_of_shards_each_get_their_guilds_only(tmp_path: Path) -> None:
    async with discord_with(2) as server:
        guilds = [server.add_guild(f"guild on shard {s}", shard=s) for s in (0, 1)]
        owners = [g.members[server.owner.id] for g in guilds]
        first = _bot(_settings(server, tmp_path / "a", shard_count=2, shard_ids=(0,)))
        second = _bot(_settings(server, tmp_path / "b", shard_count=2, shard_ids=(1,)))
        assert isinstance(first, ShardedCratediggerBot)
        async with connected(first, server), connected(second, server):
            await server.wait_shards()
            assert [g.id for g in first.guilds] == [guilds[0].id]
            assert [g.id for g in second.guilds] == [guilds[1].id]
            assert sorted(i["shard"] for i in server.identifies) == [[0, 2], [1, 2]]
            await first.sync_commands()  # global commands, so members can invoke them
            for guild, owner in zip(guilds, owners):
                await _sync_here(server, owner)
                assert server.sync_requests[-1][0] == guild.id
            late = server.add_guild("joined later", shard=1)  # GUILD_CREATE reaches shard 1 only
            for _ in range(1200):  # the bot makes no request on GUILD_CREATE: poll its cache (60 s)
                if second.get_guild(late.id) is not None:
                    break
                await asyncio.sleep(0.05)
            assert second.get_guild(late.id) is not None
            assert first.get_guild(late.id) is None
            assert [ix.shard for ix in server.interactions.values()] == [0, 1]


async def test_auto_runs_every_shard_discord_recommends(tmp_path: Path) -> None:
    async with discord_with(3) as server:
        guilds = {server.add_guild(f"g{s}", shard=s).id for s in (0, 1, 2)}
        bot = _bot(_settings(server, tmp_path, shard_count="auto"))
        async with connected(bot, server):
            await server.wait_shards()
            assert bot.shard_count == 3 and sorted(bot.shards) == [0, 1, 2]
            assert {g.id for g in bot.guilds} == guilds


async def test_an_unsharded_bot_is_refused_where_sharding_is_required(tmp_path: Path) -> None:
    async with discord_with(2) as server:
        bot = _bot(_settings(server, tmp_path))
        assert not isinstance(bot, ShardedCratediggerBot)
        with pytest.raises(discord.ConnectionClosed) as closed:
            async with connected(bot, server):
                pass
        assert closed.value.code == 4011


def test_shard_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRATEDIGGER_SHARD_COUNT", "4")
    monkeypatch.setenv("CRATEDIGGER_SHARD_IDS", "1, 3")
    assert (load_settings(None).shard_count, load_settings(None).shard_ids) == (4, (1, 3))
    for count, ids, problem in (("4", "4", "distinct shards 0 to 3"), ("auto", "1", "set to a number"),
                                ("0", "", "at least 1"), ("", "0", "set to a number")):
        monkeypatch.setenv("CRATEDIGGER_SHARD_COUNT", count)
        monkeypatch.setenv("CRATEDIGGER_SHARD_IDS", ids)
        with pytest.raises(ValueError, match=problem):
            load_settings(None)
