"""Process start-up, in one place: the `cratedigger` command (every verb of `core.cli`, plus the verbs that
start long-running processes) and `python -m bot`.

- `cratedigger run`: the Discord bot (one process per shard group, see CRATEDIGGER_SHARD_*);
- `cratedigger sync-commands`: log in over HTTP only and publish the slash commands;
- `cratedigger worker`: serve the analysis job queue (CRATEDIGGER_BROKER_URL) on this machine.

The bot layer composes core, never the other way round. discord.py is imported only by the bot verbs, so
the other verbs (and the worker) start without it.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from core.cli import Outcome
from core.cli import main as cli_main
from core.config import Settings
from core.errors import UserError
from core.stopping import Terminated, run

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    run = subparsers.add_parser(
        "run", parents=[parent], help="start the Discord bot (DISCORD_TOKEN from .env or the environment)",
        description="Start the Discord bot. Commands are synced at start only to DEV_GUILD_ID when it is "
                    "set; otherwise publish them once with `cratedigger sync-commands`.")
    run.set_defaults(handler=handle_run, long_running=True)
    sync_verb = subparsers.add_parser(
        "sync-commands", parents=[parent], help="publish the bot's slash commands to Discord",
        description="Publish the slash commands globally (can take a while to appear) or to one server "
                    "(instant). Run it after installing or upgrading, not at every start.")
    sync_verb.add_argument("--guild", type=int, default=None, metavar="ID",
                           help="publish to this server only (default: globally)")
    sync_verb.set_defaults(handler=handle_sync)
    worker = subparsers.add_parser(
        "worker", parents=[parent], help="run analysis jobs from the queue (CRATEDIGGER_BROKER_URL)",
        description="Serve the analysis job queue on this machine with CRATEDIGGER_WORKERS processes, "
                    "until stopped (SIGTERM lets running jobs finish first).")
    worker.set_defaults(handler=handle_worker, long_running=True)


def _require_token(settings: Settings) -> str:
    if not settings.discord_token.strip():
        raise UserError("DISCORD_TOKEN is not set: put the bot token from the Discord developer portal "
                        "in .env (see .env.example).")
    return settings.discord_token


async def serve(settings: Settings) -> None:
    """Run until the process is stopped; a bad token is a user error, not a crash."""
    import discord

    from bot.app import make_bot
    from core.allocator import keep_large_blocks_mapped

    token = _require_token(settings)
    keep_large_blocks_mapped()  # a process that runs for months: freed uploads go back to the system
    async with make_bot(settings) as bot:
        try:
            await bot.start(token)
        except discord.LoginFailure:
            raise UserError("Discord refused the token: copy it again from the developer portal "
                            "(Bot → Reset Token) into DISCORD_TOKEN.") from None


async def sync(settings: Settings, *, guild_id: int | None = None) -> list[str]:
    """Log in over HTTP only (no gateway, no service, no models) and publish the command tree."""
    import discord

    from bot.app import CratediggerBot

    token = _require_token(settings)
    async with CratediggerBot(settings, service_enabled=False) as bot:
        try:
            await bot.login(token)
        except discord.LoginFailure:
            raise UserError("Discord refused the token in DISCORD_TOKEN.") from None
        return await bot.sync_commands(guild_id)


def handle_run(args: argparse.Namespace, settings: Settings) -> Outcome:
    try:
        run(serve(settings))
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM from a service manager (core.stopping)
        log.info("stopped (%s)", "SIGTERM" if isinstance(stop, Terminated) else "interrupted")
    return Outcome({"status": "stopped"}, "")


def handle_sync(args: argparse.Namespace, settings: Settings) -> Outcome:
    names = run(sync(settings, guild_id=args.guild))
    where = f"to server {args.guild}" if args.guild else "globally"
    return Outcome({"synced": names, "guild_id": args.guild},
                   f"synced {len(names)} commands {where}: " + " ".join(f"/{n}" for n in names))


def handle_worker(args: argparse.Namespace, settings: Settings) -> Outcome:
    from core.jobs.worker import run_worker

    if not settings.broker_url.strip():
        raise UserError("CRATEDIGGER_BROKER_URL is not set: a worker serves the analysis job queue "
                        "(see README, Running at scale).")
    asyncio.run(run_worker(settings))  # arq stops on SIGTERM itself, letting running jobs finish
    return Outcome({"status": "stopped"}, "")


def main(argv: Sequence[str] | None = None) -> int:
    """The `cratedigger` command."""
    return cli_main(argv, extra=[register])


def run_bot(argv: Sequence[str] | None = None) -> int:
    """`python -m bot`: the same as `cratedigger run`."""
    return main(["run", *(argv if argv is not None else sys.argv[1:])])
