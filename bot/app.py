"""The bot: a `commands.Bot` that opens core's service once, loads one cog per area and syncs commands
only when asked (or to the development guild at start), as discord.py's maintainers recommend.

Sharded (CRATEDIGGER_SHARD_COUNT set) it is an `AutoShardedBot` running the shards in CRATEDIGGER_SHARD_IDS
(or all of them): Discord then sends this process the events of those shards' guilds only, so several
processes, on one machine or many, share the guilds. They share the database and the job queue, not memory.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import aiohttp
import discord
from discord.ext import commands

from bot.cooldown import UserCooldown
from bot.errors import CratediggerTree
from bot.journal import Journal
from bot.render import genre_chart
from bot.views import GenreFeedback, Pagers, RateTracks
from core.background import become_background
from core.config import Settings
from core.service import Service

log = logging.getLogger(__name__)
T = TypeVar("T")

EXTENSIONS = (
    "bot.cogs.genre",
    "bot.cogs.similar",
    "bot.cogs.recommend",
    "bot.cogs.library",
    "bot.cogs.profile",
    "bot.cogs.owner",
)

INTENTS = discord.Intents(guilds=True)
"""Slash commands need no message content and no member list: guilds only (roles and channels for the
admin-role check come with it)."""

PERMISSIONS = discord.Permissions(view_channel=True, send_messages=True, embed_links=True, attach_files=True)
"""What the invite asks for: reply with embeds and the chart image. Interactions need nothing else."""
SCOPES = ("bot", "applications.commands")


def invite_url(application_id: int) -> str:
    return discord.utils.oauth_url(application_id, permissions=PERMISSIONS, scopes=SCOPES)


RENDER_NICENESS = 5
DOWNLOAD_SLOTS = 8
"""Attachment downloads at a time. A burst of 50 uploads otherwise puts 50 streams' chunks in every turn of
the event loop (bench_bot: loop lag up to 170 ms); the analysis pool, not the downloads, sets the pace, so
queueing them costs no answer time."""


def _render_worker_init() -> None:
    """The render process yields the CPU to the event loop's process."""
    become_background(RENDER_NICENESS)


class CratediggerBot(commands.Bot):
    """`service_enabled=False` builds the command tree without opening the service (for syncing only)."""

    def __init__(self, settings: Settings, *, service_enabled: bool = True, **options: object) -> None:
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice here: not a problem
        super().__init__(
            command_prefix=commands.when_mentioned, intents=INTENTS, help_command=None,
            allowed_mentions=discord.AllowedMentions.none(), tree_cls=CratediggerTree, **options,  # type: ignore[arg-type]
        )
        self.settings = settings
        self.service_enabled = service_enabled
        self.cooldown = UserCooldown(settings.user_cooldown_seconds)
        self.pagers = Pagers(settings.pagers_max)
        self._service: Service | None = None
        self._downloads: aiohttp.ClientSession | None = None
        self._renderer: ProcessPoolExecutor | None = None
        self.journal: Journal | None = None

    @property
    def service(self) -> Service:
        if self._service is None:
            raise RuntimeError("the service is not open (bot started for syncing only?)")
        return self._service

    @property
    def downloads(self) -> aiohttp.ClientSession:
        """Our own session for attachment downloads, so they can be streamed with a size cap."""
        if self._downloads is None:
            raise RuntimeError("the bot is not set up")
        return self._downloads

    async def render(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a chart renderer in the bot's own render process. matplotlib is CPU-bound Python that
        holds the GIL for ~0.2 s a chart: in a thread it would stall the event loop under load."""
        if self._renderer is None:
            raise RuntimeError("the bot is not set up")
        return await asyncio.get_running_loop().run_in_executor(self._renderer, fn, *args)

    async def setup_hook(self) -> None:
        if self.service_enabled:
            self._service = await Service.open(self.settings)
            self._downloads = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=DOWNLOAD_SLOTS))
            spawn = multiprocessing.get_context("spawn")
            self._renderer = ProcessPoolExecutor(1, mp_context=spawn, initializer=_render_worker_init)
            # Start the render process and import matplotlib now, not on the first /genre.
            self._renderer.submit(genre_chart, [("warm-up", 1.0)])
            self.journal = Journal(self._service.store, self.serves_guild)
            await self.journal.tell_orphans(self)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        self.add_dynamic_items(RateTracks, GenreFeedback)
        if self.service_enabled and self.settings.dev_guild_id:
            names = await self.sync_commands(self.settings.dev_guild_id)
            log.info("synced %d commands to the development guild %s", len(names), self.settings.dev_guild_id)

    def serves_guild(self, guild_id: int) -> bool:
        """Whether the guild's events come to this process: every guild unless it runs some shards only."""
        count, ids = self.settings.shard_count, self.settings.shard_ids
        if not isinstance(count, int) or not ids:
            return True
        return (guild_id >> 22) % count in ids

    async def sync_commands(self, guild_id: int | None = None) -> list[str]:
        """Publish the command tree: to one guild (instant; global commands copied there) or globally."""
        if guild_id is not None:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
        else:
            synced = await self.tree.sync()
        return [command.name for command in synced]

    async def on_ready(self) -> None:
        log.info("ready as %s in %d servers%s; invite: %s", self.user, len(self.guilds), self._shards_text(),
                 invite_url(self.application_id or 0))

    def _shards_text(self) -> str:
        return ""

    async def close(self) -> None:
        """Idempotent: discord.py calls it again from `connect()` when the gateway closes, possibly while
        the first call is still closing the service."""
        service, self._service = self._service, None
        downloads, self._downloads = self._downloads, None
        renderer, self._renderer = self._renderer, None
        await super().close()
        if downloads is not None:
            await downloads.close()
        if renderer is not None:
            await asyncio.to_thread(renderer.shutdown, wait=True, cancel_futures=True)
        if service is not None:
            await service.close()


class ShardedCratediggerBot(CratediggerBot, commands.AutoShardedBot):
    """The same bot over several gateway shards in one process (`shard_ids`, or all `shard_count` of them;
    with `shard_count=None` discord.py asks Discord for the recommended count)."""

    def _shards_text(self) -> str:
        return f" on shards {sorted(self.shards)} of {self.shard_count}"


def make_bot(settings: Settings, **options: Any) -> CratediggerBot:
    """The bot the settings ask for: unsharded, or sharded as CRATEDIGGER_SHARD_COUNT/_IDS say."""
    if not settings.sharded:
        return CratediggerBot(settings, **options)
    count = None if settings.shard_count == "auto" else settings.shard_count
    return ShardedCratediggerBot(settings, shard_count=count, shard_ids=list(settings.shard_ids) or None,
                                 **options)
