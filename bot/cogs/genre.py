"""/genre: what genre is this file?"""
from __future__ import annotations

import io

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import CratediggerBot
from bot.checks import enforce_cooldown
from bot.errors import Refusal
from bot.render import CHART_FILENAME, genre_chart, genre_embed
from bot.replies import answer, defer
from bot.uploads import check_attachment, download, upload_cap
from bot.views import GenreView


class Genre(commands.Cog):
    def __init__(self, bot: CratediggerBot) -> None:
        self.bot = bot

    @app_commands.command(name="genre", description="Guess the genre of an audio file")
    @app_commands.describe(file="An audio file: mp3, ogg, opus, wav, flac, m4a… (up to the upload limit)")
    @app_commands.guild_only()
    async def genre(self, interaction: discord.Interaction, file: discord.Attachment) -> None:
        cap = upload_cap(interaction, self.bot.settings)
        check_attachment(file, cap)
        enforce_cooldown(interaction)
        await defer(interaction)
        upload = await download(self.bot.downloads, file, cap)
        report = await self.bot.service.classify(upload, guild_id=interaction.guild_id,
                                                 user_id=interaction.user.id)
        if report.genre is None:
            raise Refusal("Genre analysis is not set up on this bot yet (no genre model is installed).")
        chart = await self.bot.render(genre_chart, report.top[:3])
        await answer(interaction, embed=genre_embed(report), view=GenreView(report.genre),
                     file=discord.File(io.BytesIO(chart), CHART_FILENAME))


async def setup(bot: CratediggerBot) -> None:
    await bot.add_cog(Genre(bot))
