"""What a member keeps on a server: /tag, /history and /forget-me."""
from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import CratediggerBot
from bot.cogs.recommend import MOOD_CHOICES
from bot.render import history_embed
from bot.replies import answer, defer
from bot.text import choice_name, safe
from bot.views import ConfirmForget
from core.errors import UnknownTrack
from core.store import parse_id


class Profile(commands.Cog):
    def __init__(self, bot: CratediggerBot) -> None:
        self.bot = bot

    async def _track(self, guild_id: int, text: str) -> tuple[int, str]:
        """The autocomplete sends a track id; a member who typed instead gets the one title that matches."""
        picked = parse_id(text)
        if picked is not None:
            return picked, f"track #{picked}"
        found = await self.bot.service.find_tracks(guild_id, text.strip(), limit=2)
        if len(found) != 1:
            raise UnknownTrack(f"no single track matches '{text[:80]}'; pick one from the list as you type.")
        return found[0]

    @app_commands.command(name="tag", description="Tag a track of this server's library with a mood")
    @app_commands.describe(track="Start typing a title", mood="The mood it puts you in")
    @app_commands.choices(mood=MOOD_CHOICES)
    @app_commands.guild_only()
    async def tag(self, interaction: discord.Interaction, track: str, mood: str) -> None:
        await defer(interaction, ephemeral=True)
        track_id, title = await self._track(interaction.guild_id, track)  # type: ignore[arg-type]
        mood = await self.bot.service.tag(interaction.guild_id, interaction.user.id, track_id, mood)  # type: ignore[arg-type]
        await answer(interaction, content=f"Tagged **{safe(title, 90)}** as {mood}.", ephemeral=True)

    @tag.autocomplete("track")
    async def tag_track(self, interaction: discord.Interaction,
                        current: str) -> list[app_commands.Choice[str]]:
        found = await self.bot.service.find_tracks(interaction.guild_id, current, limit=25)  # type: ignore[arg-type]
        return [app_commands.Choice(name=choice_name(title), value=str(track_id))
                for track_id, title in found]

    @app_commands.command(name="history", description="What you asked me on this server (only you see it)")
    @app_commands.guild_only()
    async def history(self, interaction: discord.Interaction) -> None:
        await defer(interaction, ephemeral=True)
        items = await self.bot.service.history(interaction.guild_id, interaction.user.id, limit=20)  # type: ignore[arg-type]
        await answer(interaction, embed=history_embed(items), ephemeral=True)

    @app_commands.command(name="forget-me",
                          description="Delete your tags, history and ratings on this server")
    @app_commands.guild_only()
    async def forget_me(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            "This deletes **your** tags, history and ratings on this server, for good. Sure?",
            view=ConfirmForget(interaction.user.id, interaction), ephemeral=True)


async def setup(bot: CratediggerBot) -> None:
    await bot.add_cog(Profile(bot))
