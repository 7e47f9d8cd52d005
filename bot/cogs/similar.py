"""/similar: tracks in this server's library that sound like a link or a file."""
from __future__ import annotations

import io

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import CratediggerBot
from bot.errors import Refusal
from bot.render import MAP_FILENAME
from bot.replies import answer
from bot.uploads import receive
from bot.views import SimilarPager

MAX_RESULTS = 20


class Similar(commands.Cog):
    def __init__(self, bot: CratediggerBot) -> None:
        self.bot = bot

    @app_commands.command(name="similar",
                          description="Find tracks in this server's library that sound like a song")
    @app_commands.describe(link="A song's link: Spotify, Apple Music, Deezer, Tidal, YouTube, SoundCloud, an audio file…",
                           file="…or an audio file",
                           show_map="Also show where the song falls on the map of the library")
    @app_commands.guild_only()
    async def similar(self, interaction: discord.Interaction, link: str | None = None,
                      file: discord.Attachment | None = None, show_map: bool = False) -> None:
        query = await receive(self.bot, interaction, link, file)
        report = await self.bot.service.similar(interaction.guild_id,  # type: ignore[arg-type]
                                                query, k=MAX_RESULTS, user_id=interaction.user.id,
                                                with_map=show_map)
        if not report.results:
            raise Refusal("Nothing in this server's library is close enough to compare yet.")
        pager = SimilarPager(report, interaction.user.id, interaction, timeout=self.bot.settings.pager_seconds)
        files = [discord.File(io.BytesIO(report.map_png), MAP_FILENAME)] if report.map_png else []
        await answer(interaction, embed=pager.embed(), view=pager, files=files)
        self.bot.pagers.keep(pager)


async def setup(bot: CratediggerBot) -> None:
    await bot.add_cog(Similar(bot))
