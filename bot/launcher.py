"""Starting the bot (`python -m bot`, `cratedigger run`) and publishing its commands (`cratedigger
sync-commands`). Both read the same settings as the command line."""
from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

import discord

from bot.app import CratediggerBot
from core.config import Settings
from core.errors import UserError

log = logging.getLogger(__name__)


def _require_token(settings: Settings) -> str:
    if not settings.discord_token.strip():
        raise UserError("DISCORD_TOKEN is not set: put the bot token from the Discord developer portal "
                        "in .env (see .env.example).")
    return settings.discord_token


async def serve(settings: Settings) -> None:
    """Run until the process is stopped; a bad token is a user error, not a crash."""
    token = _require_token(settings)
    async with CratediggerBot(settings) as bot:
        try:
            await bot.start(token)
        except discord.LoginFailure:
            raise UserError("Discord refused the token: copy it again from the developer portal "
                            "(Bot → Reset Token) into DISCORD_TOKEN.") from None


async def sync(settings: Settings, *, guild_id: int | None = None) -> list[str]:
    """Log in over HTTP only (no gateway, no service, no models) and publish the command tree."""
    token = _require_token(settings)
    async with CratediggerBot(settings, service_enabled=False) as bot:
        try:
            await bot.login(token)
        except discord.LoginFailure:
            raise UserError("Discord refused the token in DISCORD_TOKEN.") from None
        return await bot.sync_commands(guild_id)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bot`: the same as `cratedigger run`."""
    from core.cli import main as cli_main

    return cli_main(["run", *(argv if argv is not None else sys.argv[1:])])


def run_forever(settings: Settings) -> None:
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        log.info("stopped")
