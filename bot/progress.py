"""Progress shown by editing the command's own message, at most once per interval, without slowing the
work that reports it (the work calls `update`, which only records; a task does the editing)."""
from __future__ import annotations

import asyncio
import contextlib
import logging

import discord

from bot.render import progress_bar

log = logging.getLogger(__name__)


class ProgressMessage:
    def __init__(self, interaction: discord.Interaction, label: str, *, interval: float = 1.5) -> None:
        self.interaction = interaction
        self.label = label
        self.interval = interval
        self.state = (0, 0)
        self.edits = 0
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def update(self, done: int, total: int) -> None:
        """The `progress(done, total)` callback core's long operations call."""
        self.state = (done, total)
        self._dirty.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="progress-message")

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self.interaction.is_expired():
                return
            done, total = self.state
            try:
                text = f"{self.label}… {progress_bar(done, total)}"
                await self.interaction.edit_original_response(content=text)
                self.edits += 1
            except discord.HTTPException as exc:
                log.warning("progress edit failed: %s", exc)
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
