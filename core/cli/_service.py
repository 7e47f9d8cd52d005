"""Running one service use case from a synchronous CLI handler."""
from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TypeVar

from core.config import Settings
from core.service import Service
from core.stopping import run
from core.store import MAX_ID, parse_id

T = TypeVar("T")

CLI_GUILD = 0
"""The command line's own library when no --guild is given."""


def database_id(text: str) -> int:
    """argparse type for user, guild and track ids: a whole number the store can hold (else exit 2, not an
    OverflowError from SQLite halfway through the command)."""
    value = parse_id(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"not an id (0 to {MAX_ID}): {text[:40]}")
    return value


def with_service(settings: Settings, use_case: Callable[[Service], Awaitable[T]], *,
                 wait_for_workers: bool = True) -> T:
    """Open the service, run `use_case` on it, close it. `wait_for_workers=False` lets the use case start
    while the analysis workers are still starting (`Service.open`)."""
    async def go() -> T:
        service = await Service.open(settings, wait_for_workers=wait_for_workers)
        try:
            return await use_case(service)
        finally:
            await service.close()

    return run(go())  # SIGTERM stops it as Ctrl-C does: the service is closed on the way out
