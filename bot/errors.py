"""The one place errors become replies: core's typed errors and the bot's refusals are shown to the user
as one short private line; anything else is a bug, logged with a short id that the user is shown."""
from __future__ import annotations

import logging
import secrets

import discord
from discord import app_commands

from bot.options import leaf_options, option_problem
from bot.replies import tell
from bot.text import safe
from core.errors import UserError

log = logging.getLogger(__name__)


class Refusal(app_commands.CheckFailure):
    """The bot declines politely: not an admin, cooling down, a reindex already running, bad options."""


def describe(error: BaseException) -> str | None:
    """The user-facing line for an expected error, or None for a bug."""
    if isinstance(error, app_commands.CommandInvokeError | app_commands.TransformerError) and error.__cause__:
        error = error.__cause__
    if isinstance(error, UserError | Refusal):
        return safe(str(error), 400)
    if isinstance(error, app_commands.NoPrivateMessage):
        return "Use me inside a server: my commands work on that server's library."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Easy! Try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        return "That command has changed since Discord last heard of it; try again in a minute."
    return None


async def report(interaction: discord.Interaction, error: BaseException) -> None:
    text = describe(error)
    if text is None:
        error_id = secrets.token_hex(4)
        cause = error.__cause__ if isinstance(error, app_commands.CommandInvokeError) else error
        command = interaction.command.qualified_name if interaction.command else interaction.data
        log.error("unexpected error %s in %s (guild %s, user %s)", error_id, command, interaction.guild_id,
                  interaction.user.id, exc_info=(type(cause), cause, cause.__traceback__))
        text = (f"Something went wrong on my side (error id `{error_id}`). It has been logged; "
                "please try again later.")
    else:
        log.info("refused %s for user %s: %s", interaction.id, interaction.user.id, text)
    await tell(interaction, text)


class CratediggerTree(app_commands.CommandTree):
    """Every app command error ends here; DMs are refused server-side, not only hidden; option values that
    Discord's own client could not have sent are refused before any command sees them."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        command = interaction.command
        if not isinstance(command, app_commands.Command):
            return True  # unknown or out of date: discord.py raises CommandNotFound/SignatureMismatch next
        options = leaf_options(interaction.data or {})  # type: ignore[arg-type]
        if interaction.type is discord.InteractionType.autocomplete:
            if all(isinstance(o.get("value"), str) for o in options if o.get("focused")):
                return True
            await interaction.response.autocomplete([])  # typed text is always text: nothing to suggest
            return False
        problem = option_problem(command, options)
        if problem is not None:
            raise Refusal(problem)
        return True

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError,
                       /) -> None:
        await report(interaction, error)

    async def _call(self, interaction: discord.Interaction) -> None:
        """Every command's run, however it ends; then its deferral is crossed out of the journal. (An error
        is told by `on_error` just after this returns: a crash in between leaves a row, told "lost".)"""
        try:
            await super()._call(interaction)
        finally:
            journal = getattr(interaction.client, "journal", None)
            if journal is not None:
                await journal.ended(interaction)
