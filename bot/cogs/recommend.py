"""/recommend: tracks from this server's library for a mood, personalised by the member's ratings."""
from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import CratediggerBot
from bot.render import recommend_embed
from bot.replies import answer, defer
from bot.views import RatingView

MOODS = ("calm", "happy", "energetic", "sad", "nostalgic", "tense")
MOOD_CHOICES = [app_commands.Choice(name=m, value=m) for m in MOODS]


class Recommend(commands.Cog):
    def __init__(self, bot: CratediggerBot) -> None:
        self.bot = bot

    @app_commands.command(name="recommend",
                          description="Tracks from this server's library for a mood, tuned by your ratings")
    @app_commands.describe(mood="The mood you are in (or want to be in)",
                           count="How many tracks (1-10, default 5)")
    @app_commands.choices(mood=MOOD_CHOICES)
    @app_commands.guild_only()
    async def recommend(self, interaction: discord.Interaction, mood: str,
                        count: app_commands.Range[int, 1, 10] = 5) -> None:
        await defer(interaction)
        hits = await self.bot.service.recommend(interaction.guild_id, interaction.user.id, mood,  # type: ignore[arg-type]
                                                k=count)
        await answer(interaction, embed=recommend_embed(hits, mood), view=RatingView(hits))


async def setup(bot: CratediggerBot) -> None:
    await bot.add_cog(Recommend(bot))
