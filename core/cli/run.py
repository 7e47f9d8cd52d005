"""`cratedigger run` (start the Discord bot) and `cratedigger sync-commands` (publish its slash commands).

discord.py is imported only when one of these verbs runs, so the other verbs start fast.
"""
from __future__ import annotations

import argparse
import asyncio

from core.cli import Outcome
from core.config import Settings


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    run = subparsers.add_parser(
        "run", parents=[parent], help="start the Discord bot (DISCORD_TOKEN from .env or the environment)",
        description="Start the Discord bot. Commands are synced at start only to DEV_GUILD_ID when it is "
                    "set; otherwise publish them once with `cratedigger sync-commands`.")
    run.set_defaults(handler=handle_run)
    sync = subparsers.add_parser(
        "sync-commands", parents=[parent], help="publish the bot's slash commands to Discord",
        description="Publish the slash commands globally (can take a while to appear) or to one server "
                    "(instant). Run it after installing or upgrading, not at every start.")
    sync.add_argument("--guild", type=int, default=None, metavar="ID",
                      help="publish to this server only (default: globally)")
    sync.set_defaults(handler=handle_sync)


def handle_run(args: argparse.Namespace, settings: Settings) -> Outcome:
    from bot.launcher import run_forever

    run_forever(settings)
    return Outcome({"status": "stopped"}, "")


def handle_sync(args: argparse.Namespace, settings: Settings) -> Outcome:
    from bot.launcher import sync

    names = asyncio.run(sync(settings, guild_id=args.guild))
    where = f"to server {args.guild}" if args.guild else "globally"
    return Outcome({"synced": names, "guild_id": args.guild},
                   f"synced {len(names)} commands {where}: " + " ".join(f"/{n}" for n in names))
