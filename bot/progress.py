"""Progress of a long library command, shown for as long as the work runs, and then its result.

A command's private reply can only be edited through its interaction token, which Discord honours for
15 minutes; a reindex of a large library, or a playlist add, can take longer. So progress is shown by
editing the reply while the token has time left, and before it runs out the progress moves to a message
the bot owns and may edit for as long as it likes: one in the command's channel or, where the bot may not
post there (the channel permissions deny it Send Messages or Embed Links), a direct message to the member
who asked. The reply's last edit says where. When neither is possible the reply says that too, and the
work still runs to its end. Nothing here raises into the command: a message that cannot be sent is logged.

Edits happen at most once per `interval`, from a task, so the work never waits on Discord: the work calls
`update` (or a `stage` callback), which only records.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from types import TracebackType

import discord

from bot.errors import describe
from bot.render import progress_bar

log = logging.getLogger(__name__)

HANDOFF_MARGIN = 60.0
"""Seconds before the token expires at which progress moves to a message the bot owns: room for the
reply's last edit even when Discord is slow or rate-limits us."""
HANDOFF_SHARE = 0.2
"""A token with less than five minutes left when the work begins moves after 80 % of what was left instead
(it never happens with Discord, which wants an answer within 3 s; the local test Discord issues tokens
that live a few seconds, to show the move)."""
CHANNEL_NEEDS = discord.Permissions(view_channel=True, send_messages=True, embed_links=True)
"""To post progress and the result embed in the command's channel (Discord refuses an embed-only message
without Embed Links)."""


class ProgressMessage:
    """`async with ProgressMessage(interaction, "Library reindex", look_later=...) as progress:`, then
    give core `progress.stage("Reindexing")` as its `progress(done, total)` callback and end with
    `await progress.finish(embed=...)`. The interaction must already be deferred.

    `what` names the work in a message the bot owns ("Library reindex asked by @someone"); `look_later`
    tells the member where the result will be when it cannot be shown anywhere; `quiet_for` delays the
    first progress edit, so work that is usually quick goes straight from "thinking…" to its answer."""

    def __init__(self, interaction: discord.Interaction, what: str, *, look_later: str,
                 interval: float = 1.5, quiet_for: float = 0.0) -> None:
        self.interaction = interaction
        self.what = what
        self.look_later = look_later
        self.interval = interval
        self.label = what
        self.state = (0, 0)
        self.moved = False
        """True once progress has left the reply (the token is about to expire, or the reply failed)."""
        self.message: discord.Message | None = None
        """The message the bot owns that shows progress after the move, if one could be posted."""
        self._destination: discord.abc.Messageable | None = None
        self._dirty = False
        self._halting = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        started = time.monotonic()
        self._quiet_until = started + quiet_for
        self._not_before = started
        left = (interaction.expires_at - discord.utils.utcnow()).total_seconds()
        self._move_at = started + left - min(HANDOFF_MARGIN, HANDOFF_SHARE * max(0.0, left))

    async def __aenter__(self) -> ProgressMessage:
        self._task = asyncio.create_task(self._run(), name=f"progress-{self.interaction.id}")
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self._halt(cancel=error is not None and not isinstance(error, Exception))
        if isinstance(error, Exception) and self.moved:  # the reply is gone: say so where progress was
            reason = describe(error) or "something went wrong on my side; it has been logged."
            await self._deliver(content=f"❌ {self._heading()} stopped: {reason}", embed=None)

    # -- what the work calls ---------------------------------------------------------------------------
    def update(self, done: int, total: int) -> None:
        """The `progress(done, total)` callback core's long operations call."""
        self.state = (done, total)
        self._dirty = True
        self._wake.set()

    def stage(self, label: str) -> Callable[[int, int], None]:
        """A progress callback for one stage of the work, shown as "label… ███░░ 3/10"."""
        def update(done: int, total: int) -> None:
            self.label = label
            self.update(done, total)
        return update

    async def finish(self, *, embed: discord.Embed, public_embed: discord.Embed | None = None) -> None:
        """Show the result where the progress is: in the reply, or in the message the bot owns
        (`public_embed`, when given, if that message is in a channel others read)."""
        await self._halt(cancel=False)
        if not self.moved:
            try:
                await self.interaction.edit_original_response(content=None, embed=embed)
                return
            except discord.HTTPException as exc:
                log.info("the reply to %s took no result (%s); posting it instead", self.interaction.id, exc)
                await self._move()
        await self._deliver(content=f"✅ {self._heading()}: done.", embed=embed, public_embed=public_embed)

    # -- the editing task ------------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._halting:
            await self._sleep_until(self._next_due())
            if self._halting:
                return
            now = time.monotonic()
            if not self.moved and now >= self._move_at:
                await self._move()
            elif self._dirty and now >= max(self._quiet_until, self._not_before):
                self._dirty = False
                await self._show(self._progress_text())
                self._not_before = time.monotonic() + self.interval

    def _next_due(self) -> float | None:
        due = [] if self.moved else [self._move_at]
        if self._dirty:
            due.append(max(self._quiet_until, self._not_before))
        return min(due) if due else None

    async def _sleep_until(self, when: float | None) -> None:
        timeout = None if when is None else max(0.0, when - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    async def _halt(self, *, cancel: bool) -> None:
        """Stop the task after its current edit (or at once, when the command itself is being cancelled)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._halting = True
        self._wake.set()
        if cancel:
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if not cancel:
                raise
        except Exception:  # showing progress must never cost the work its result
            if self.interaction.client.is_closed():  # stopping (Ctrl-C, SIGTERM): its session is gone
                log.info("progress display of %s ended: the bot is stopping", self.interaction.id)
            else:
                log.exception("progress display of %s failed", self.interaction.id)

    # -- where progress is shown -----------------------------------------------------------------------
    def _progress_text(self) -> str:
        done, total = self.state
        return f"{self.label}… {progress_bar(done, total)}" if total else f"{self.label}…"

    def _heading(self) -> str:
        return f"{self.what} asked by {self.interaction.user.mention}"

    async def _show(self, text: str) -> None:
        if not self.moved:
            try:
                await self.interaction.edit_original_response(content=text)
                return
            except discord.HTTPException as exc:  # the token died early (a clock off), or Discord is unwell
                log.info("the reply to %s took no progress (%s); moving it", self.interaction.id, exc)
                await self._move()
                return
        if self.message is not None:
            try:
                await self.message.edit(content=f"{self._heading()}: {text}")
            except discord.HTTPException as exc:
                log.warning("progress message of %s could not be edited: %s", self.interaction.id, exc)

    async def _move(self) -> None:
        """Post the progress in a message the bot owns, and say where in the reply's last edit."""
        self.moved = True
        self._dirty = False  # the new message starts with the latest progress
        self.message = await self._post(content=f"{self._heading()}: {self._progress_text()}", embed=None)
        why = "⏳ This is taking longer than Discord lets me update a private reply"
        if self.message is None:
            notice = (f"{why}, and I can neither post in this channel nor send you a direct message. "
                      f"It goes on; {self.look_later}.")
        elif self._destination is self.interaction.user:
            notice = f"{why}, so the progress and the result come to you in a direct message."
        else:
            notice = f"{why}, so the progress and the result are in {self.message.jump_url} instead."
        log.info("progress of %s moved to %s", self.interaction.id,
                 "nowhere" if self.message is None else self.message.jump_url)
        try:
            await self.interaction.edit_original_response(content=notice)
        except discord.HTTPException as exc:
            log.info("the reply to %s could not say where progress went: %s", self.interaction.id, exc)

    async def _deliver(self, *, content: str, embed: discord.Embed | None,
                       public_embed: discord.Embed | None = None) -> None:
        """Put the outcome in the owned message (or a new one where it was posted, if it was deleted)."""
        if self.message is not None:
            try:
                await self.message.edit(content=content, embed=self._embed_for(self._destination, embed,
                                                                                public_embed))
                return
            except discord.HTTPException as exc:
                log.info("progress message of %s could not be edited (%s); posting anew", self.interaction.id,
                         exc)
        if await self._post(content=content, embed=embed, public_embed=public_embed) is None:
            log.warning("%s for %s ended with nowhere to say so: %s", self.what, self.interaction.id, content)

    async def _post(self, *, content: str, embed: discord.Embed | None,
                    public_embed: discord.Embed | None = None) -> discord.Message | None:
        for destination in self._destinations():
            try:
                sent = await destination.send(content=content,
                                              embed=self._embed_for(destination, embed, public_embed))
            except discord.HTTPException as exc:
                log.info("cannot post progress of %s in %s: %s", self.interaction.id, destination, exc)
                continue
            self._destination = destination
            return sent
        return None

    def _embed_for(self, destination: discord.abc.Messageable | None, embed: discord.Embed | None,
                   public_embed: discord.Embed | None) -> discord.Embed | None:
        """In a channel others read, the public version of the result (when there is one)."""
        if public_embed is not None and destination is not self.interaction.user:
            return public_embed
        return embed

    def _destinations(self) -> list[discord.abc.Messageable]:
        """Where the bot may post: the channel once it has been used, else the channel when Discord says the
        bot may post embeds there, then the member's direct messages."""
        if self._destination is not None:
            return [self._destination]
        places: list[discord.abc.Messageable] = []
        channel = self.interaction.channel
        if isinstance(channel, discord.abc.Messageable) and self.interaction.app_permissions >= CHANNEL_NEEDS:
            places.append(channel)
        places.append(self.interaction.user)
        return places
