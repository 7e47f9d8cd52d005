"""/genre: what genre is this file, or the song behind this link?"""
from __future__ import annotations

import io

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import CratediggerBot
from bot.errors import Refusal
from bot.render import CHART_FILENAME, MAP_FILENAME, genre_chart, genre_embed
from bot.replies import answer
from bot.uploads import receive
from bot.views import GenreView


class Genre(commands.Cog):
    def __init__(self, bot: CratediggerBot) -> None:
        self.bot = bot

    @app_commands.command(name="genre", description="Guess the genre of an audio file or of a song's link")
    @app_commands.describe(file="An audio file: mp3, ogg, opus, wav, flac, m4a… (up to the upload limit)",
                           link="…or a song's link: Spotify, Apple Music, Deezer, Tidal, YouTube, SoundCloud, an audio file…",
                           show_map="Also show where the song falls on the map of this server's library")
    @app_commands.guild_only()
    async def genre(self, interaction: discord.Interaction, file: discord.Attachment | None = None,
                    link: str | None = None, show_map: bool = False) -> None:
        query = await receive(self.bot, interaction, link, file)
        report = await self.bot.service.classify(query, guild_id=interaction.guild_id,
                                                 user_id=interaction.user.id, with_map=show_map)
        if report.genre is None:
            raise Refusal("Genre analysis is not set up on this bot yet (no genre model is installed).")
        chart = await self.bot.render(genre_chart, report.top[:3])
        files = [discord.File(io.BytesIO(chart), CHART_FILENAME)]
        if report.map_png:
            files.append(discord.File(io.BytesIO(report.map_png), MAP_FILENAME))
        await answer(interaction, embed=genre_embed(report), view=GenreView(report.genre), files=files)


async def setup(bot: CratediggerBot) -> None:
    await bot.add_cog(Genre(bot))
