"""/sync: the bot owner publishes the command tree on demand (never automatically at every start)."""
from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import CratediggerBot
from bot.errors import Refusal
from bot.replies import answer, defer


class Owner(commands.Cog):
    def __init__(self, bot: CratediggerBot) -> None:
        self.bot = bot

    @app_commands.command(name="sync", description="(bot owner) Publish the bot's slash commands")
    @app_commands.describe(scope="Here (instant, for testing) or everywhere (may take a while to show)")
    @app_commands.choices(scope=[app_commands.Choice(name="this server", value="here"),
                                 app_commands.Choice(name="everywhere", value="global")])
    @app_commands.default_permissions(administrator=True)
    @app_commands.guild_only()
    async def sync(self, interaction: discord.Interaction, scope: str = "global") -> None:
        if not await self.bot.is_owner(interaction.user):
            raise Refusal("Only the bot's owner can publish its commands.")
        await defer(interaction, ephemeral=True)
        names = await self.bot.sync_commands(interaction.guild_id if scope == "here" else None)
        where = "to this server" if scope == "here" else "globally"
        await answer(interaction, content=f"Synced {len(names)} commands {where}: " +
                     ", ".join(f"/{n}" for n in names), ephemeral=True)


async def setup(bot: CratediggerBot) -> None:
    await bot.add_cog(Owner(bot))
