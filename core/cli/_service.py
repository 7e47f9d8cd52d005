"""Running one service use case from a synchronous CLI handler."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from core.config import Settings
from core.service import Service

T = TypeVar("T")

CLI_GUILD = 0
"""The command line's own library when no --guild is given."""


def with_service(settings: Settings, use_case: Callable[[Service], Awaitable[T]]) -> T:
    async def go() -> T:
        service = await Service.open(settings)
        try:
            return await use_case(service)
        finally:
            await service.close()

    return asyncio.run(go())
