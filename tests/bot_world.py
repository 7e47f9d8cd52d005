"""The real bot, in this process, on the local Discord server, with a library of generated songs."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bot.app import CratediggerBot
from bot.launcher import sync
from core.config import Settings
from tests.conftest import wav_bytes
from tests.discord_server import FakeDiscord, connected, routed_to


@contextlib.asynccontextmanager
async def bot_with_library(tmp_path: Path, songs: int, **settings: Any
                           ) -> AsyncIterator[tuple[FakeDiscord, Any, CratediggerBot]]:
    """The real bot on the local Discord, its guild's library `songs` generated songs."""
    server = FakeDiscord()
    await server.start()
    guild = server.add_guild("Bot world")
    config = Settings(data_dir=tmp_path / "data", discord_token=server.token, workers=1,
                      user_cooldown_seconds=0, **settings)
    folder = tmp_path / "songs"
    folder.mkdir()
    for i in range(songs):
        (folder / f"song {i}.wav").write_bytes(wav_bytes(4, freq=200 + 90 * i, seed=i))
    bot = CratediggerBot(config, guild_ready_timeout=0.05)
    try:
        with routed_to(server):
            async with connected(bot, server):
                await sync(config)
                if songs:
                    assert len((await bot.service.add_to_library(guild.id, [folder])).added) == songs
                yield server, guild, bot
    finally:
        await server.stop()
