"""`cratedigger ARGS...` with discord.py pointed at a local Discord server: how the deployment test starts
real bot processes. The server's addresses come in FAKE_DISCORD_API and FAKE_DISCORD_GATEWAY."""
from __future__ import annotations

import os
import sys

from bot.launcher import main
from tests.discord_server.client import routed_to_urls

if __name__ == "__main__":
    with routed_to_urls(os.environ["FAKE_DISCORD_API"], os.environ["FAKE_DISCORD_GATEWAY"]):
        sys.exit(main(sys.argv[1:]))
