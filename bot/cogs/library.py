"""/library add | reindex | stats: managing this server's library (library admins only)."""
from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import CratediggerBot
from bot.checks import require_library_admin
from bot.errors import Refusal
from bot.progress import ProgressMessage
from bot.render import add_embed, reindex_embed, stats_embed
from bot.replies import answer, defer
from bot.uploads import receive


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Library(commands.GroupCog, group_name="library",
              group_description="Manage this server's music library"):
    def __init__(self, bot: CratediggerBot) -> None:
        self.bot = bot
        self.reindexing: set[int] = set()
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        """Server-side, on every call: default permissions only hide the commands and can be overridden."""
        require_library_admin(interaction, self.bot.settings.admin_role)
        return True

    @app_commands.command(name="add", description="Add a track, or a playlist's tracks, from a link or file")
    @app_commands.describe(link="A link to a song, or to a playlist (an RSS feed, a page of several songs…)",
                           file="…or an audio file")
    async def add(self, interaction: discord.Interaction, link: str | None = None,
                  file: discord.Attachment | None = None) -> None:
        source = await receive(self.bot, interaction, link, file, ephemeral=True)
        report = await self.bot.service.add_to_library(interaction.guild_id, [source],  # type: ignore[arg-type]
                                                       added_by=interaction.user.id)
        await answer(interaction, embed=add_embed(report, self.bot.settings.max_playlist_entries),
                     ephemeral=True)

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
            progress = ProgressMessage(interaction, "Reindexing")
            try:
                report = await self.bot.service.reindex(guild_id, full=full, progress=progress.update)
            finally:
                await progress.close()
            await interaction.edit_original_response(content=None, embed=reindex_embed(report))
        finally:
            self.reindexing.discard(guild_id)

    @app_commands.command(name="stats", description="How many tracks, analysed and indexed")
    async def stats(self, interaction: discord.Interaction) -> None:
        await defer(interaction, ephemeral=True)
        stats = await self.bot.service.library_stats(interaction.guild_id)  # type: ignore[arg-type]
        await answer(interaction, embed=stats_embed(stats), ephemeral=True)


async def setup(bot: CratediggerBot) -> None:
    await bot.add_cog(Library(bot))
