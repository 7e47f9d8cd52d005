"""/genre: what genre is this file, or the song behind this link?"""
from __future__ import annotations

import io

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import CratediggerBot
from bot.errors import Refusal
from bot.render import CHART_FILENAME, genre_chart, genre_embed
from bot.replies import answer
from bot.uploads import receive
from bot.views import GenreView


class Genre(commands.Cog):
    def __init__(self, bot: CratediggerBot) -> None:
        self.bot = bot

    @app_commands.command(name="genre", description="Guess the genre of an audio file or of a song's link")
    @app_commands.describe(file="An audio file: mp3, ogg, opus, wav, flac, m4a… (up to the upload limit)",
                           link="…or a song's link: Spotify, Apple Music, Deezer, Tidal, YouTube, SoundCloud, an audio file…")
    @app_commands.guild_only()
    async def genre(self, interaction: discord.Interaction, file: discord.Attachment | None = None,
                    link: str | None = None) -> None:
        query = await receive(self.bot, interaction, link, file)
        report = await self.bot.service.classify(query, guild_id=interaction.guild_id,
                                                 user_id=interaction.user.id)
        if report.genre is None:
            raise Refusal("Genre analysis is not set up on this bot yet (no genre model is installed).")
        chart = await self.bot.render(genre_chart, report.top[:3])
        await answer(interaction, embed=genre_embed(report), view=GenreView(report.genre),
                     file=discord.File(io.BytesIO(chart), CHART_FILENAME))


async def setup(bot: CratediggerBot) -> None:
    await bot.add_cog(Genre(bot))
