"""SIGTERM stops a process as Ctrl-C does.

systemd, docker and Kubernetes stop a service with SIGTERM (docker and Kubernetes send it to the main
process only). Python's default for it ends the process on the spot: no `finally`, no `async with` exit, so
the bot left its analysis workers, chart renderer and link workers running as orphans and its SQLite
write-ahead log unmerged. asyncio already turns Ctrl-C into a cancellation of the main task, which runs every
clean-up on the way out; `run` makes SIGTERM do the same, then raises `Terminated` where Ctrl-C raises
KeyboardInterrupt, so callers treat both alike.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM). A KeyboardInterrupt, so whatever ends cleanly on Ctrl-C ends
    the same way on it."""


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, where SIGTERM cancels `main` (its clean-up runs) and then raises `Terminated`.

    A second SIGTERM while stopping is ignored: cancelling again would cut the clean-up short (the service
    manager's own timeout, then SIGKILL, is the backstop)."""
    received = False

    async def cancelled_by_sigterm() -> T:
        task = asyncio.current_task()
        assert task is not None

        def stop() -> None:
            nonlocal received
            if received:
                log.info("SIGTERM again: still stopping")
                return
            received = True
            log.info("SIGTERM: stopping")
            task.cancel()

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop)
        try:
            return await main
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        return asyncio.run(cancelled_by_sigterm())
    except asyncio.CancelledError:
        if received:
            raise Terminated() from None
        raise
