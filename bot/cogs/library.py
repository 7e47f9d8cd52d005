"""/library add | reindex | stats: managing this server's library (library admins only); /library map: the
library drawn as a map (anyone on the server).

The group carries no default member permissions, since Discord applies them to a group as a whole and would
hide `map` from members; the admin subcommands are refused server-side instead (`interaction_check`)."""
from __future__ import annotations

import io

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import CratediggerBot
from bot.checks import require_library_admin
from bot.errors import Refusal
from bot.progress import ProgressMessage
from bot.render import MAP_FILENAME, add_embed, map_embed, reindex_embed, stats_embed
from bot.replies import answer, defer
from bot.uploads import receive

LOOK_LATER = "`/library stats` shows the library once it is done"
ADD_QUIET_SECONDS = 3.0
"""A single track is usually added within a few seconds: no progress bar flashes before its answer."""


EVERYONE = {"map"}
"""Subcommands any member may use."""


@app_commands.guild_only()
class Library(commands.GroupCog, group_name="library",
              group_description="Manage this server's music library"):
    def __init__(self, bot: CratediggerBot) -> None:
        self.bot = bot
        self.reindexing: set[int] = set()
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        """Server-side, on every call but the members' ones: admins only."""
        if interaction.command is None or interaction.command.name not in EVERYONE:
            require_library_admin(interaction, self.bot.settings.admin_role)
        return True

    @app_commands.command(name="add", description="Add a track, or a playlist's tracks, from a link or file")
    @app_commands.describe(link="A song, album or playlist link (Spotify, Apple Music, Deezer, YouTube, an RSS feed…)",
                           file="…or an audio file")
    async def add(self, interaction: discord.Interaction, link: str | None = None,
                  file: discord.Attachment | None = None) -> None:
        source = await receive(self.bot, interaction, link, file, ephemeral=True)
        async with ProgressMessage(interaction, "Library add", look_later=LOOK_LATER,
                                   quiet_for=ADD_QUIET_SECONDS) as progress:
            report = await self.bot.service.add_to_library(
                interaction.guild_id, [source], added_by=interaction.user.id,  # type: ignore[arg-type]
                progress=progress.stage("Analysing"),
                fetch_progress=progress.stage("Downloading the playlist's tracks"))
            limit = self.bot.settings.max_playlist_entries
            await progress.finish(embed=add_embed(report, limit),
                                  public_embed=add_embed(report, limit, details=False))

    @app_commands.command(name="reindex",
                          description="Analyse new and changed tracks and rebuild the search index")
    @app_commands.describe(full="Re-analyse every track, not only new and changed ones")
    async def reindex(self, interaction: discord.Interaction, full: bool = False) -> None:
        guild_id: int = interaction.guild_id  # type: ignore[assignment]
        if guild_id in self.reindexing:
            raise Refusal("A reindex is already running on this server; its message shows the progress.")
        self.reindexing.add(guild_id)
        try:
            await defer(interaction, ephemeral=True)
            async with ProgressMessage(interaction, "Library reindex", look_later=LOOK_LATER) as progress:
                report = await self.bot.service.reindex(guild_id, full=full,
                                                        progress=progress.stage("Reindexing"))
                await progress.finish(embed=reindex_embed(report),
                                      public_embed=reindex_embed(report, details=False))
        finally:
            self.reindexing.discard(guild_id)

    @app_commands.command(name="stats", description="How many tracks, analysed and indexed")
    async def stats(self, interaction: discord.Interaction) -> None:
        await defer(interaction, ephemeral=True)
        stats = await self.bot.service.library_stats(interaction.guild_id)  # type: ignore[arg-type]
        await answer(interaction, embed=stats_embed(stats), ephemeral=True)

    @app_commands.command(name="map", description="See this server's library as a map, coloured by genre")
    @app_commands.describe(link="Mark where a song falls on the map (a link)", file="…or an audio file")
    async def map(self, interaction: discord.Interaction, link: str | None = None,
                  file: discord.Attachment | None = None) -> None:
        mark = await receive(self.bot, interaction, link, file) if (link or file) else None
        if mark is None:
            await defer(interaction)
        report = await self.bot.service.library_map(interaction.guild_id, mark=mark)  # type: ignore[arg-type]
        await answer(interaction, embed=map_embed(report),
                     file=discord.File(io.BytesIO(report.png), filename=MAP_FILENAME))


async def setup(bot: CratediggerBot) -> None:
    await bot.add_cog(Library(bot))
