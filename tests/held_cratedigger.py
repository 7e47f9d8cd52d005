"""`cratedigger ARGS...` (on the local Discord server, as `tests.routed_cratedigger`, when FAKE_DISCORD_API is
set) with the library analysis
of one file held until the process stops: a reindex is in flight, on purpose, whenever the test stops the
process, however fast or loaded the machine is. HOLD_ANALYSIS names the file; the process logs "holding the
analysis of NAME" when the reindex reaches it."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

from bot.launcher import main
from core.service import Service
from tests.discord_server.client import routed_to_urls

log = logging.getLogger("tests.held")
_analyse = Service._analyse_for_library


async def _held(self: Service, path: Path) -> object:
    if path.name == os.environ["HOLD_ANALYSIS"]:
        log.warning("holding the analysis of %s", path.name)
        await asyncio.Event().wait()  # never set: only the end of the process ends it
    return await _analyse(self, path)


if __name__ == "__main__":
    Service._analyse_for_library = _held  # type: ignore[method-assign]
    routed = (routed_to_urls(os.environ["FAKE_DISCORD_API"], os.environ["FAKE_DISCORD_GATEWAY"])
              if "FAKE_DISCORD_API" in os.environ else contextlib.nullcontext())
    with routed:
        sys.exit(main(sys.argv[1:]))
