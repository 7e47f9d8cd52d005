"""Requests this bot process has acknowledged and not answered yet, kept in the database.

A process that dies (SIGKILL, the OOM killer, a lost machine) cannot answer what it was working on, and
Discord would show those members "thinking…" until the interaction's token dies 15 minutes later. So each
deferral is written down, and crossed out when the command has ended (answered or told why not). The
process that takes over the dead one's shards, at its start, finds what the other process left and tells
each member, through the interaction's own token (which needs no gateway session), that the request was
lost and should be sent again. Nothing accepted then ends without a word.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import discord

from core.store import Store

log = logging.getLogger(__name__)

LOST = "⚠️ I was restarted while working on this and lost it; please send it again."
_NOTED = "cratedigger.journaled"


class Journal:
    def __init__(self, store: Store, owns: Callable[[int], bool]) -> None:
        self.store = store
        self.owns = owns
        """Whether a guild's events come to this process (its shards'), so its orphans are ours to tell."""
        self.process = uuid.uuid4().hex

    async def accepted(self, interaction: discord.Interaction) -> None:
        """Write down a deferred interaction. A failure to do so costs the request nothing."""
        if interaction.guild_id is None:
            return
        try:
            await self.store.remember_pending(
                interaction_id=interaction.id, guild_id=interaction.guild_id,
                application_id=interaction.application_id, token=interaction.token,
                expires_at=interaction.expires_at.timestamp(), process=self.process)
            interaction.extras[_NOTED] = True
        except Exception as exc:  # noqa: BLE001 - the journal is a safety net, never a reason to fail
            log.warning("could not note interaction %s as pending: %s", interaction.id, exc)

    async def ended(self, interaction: discord.Interaction) -> None:
        """Cross out an interaction whose command has ended."""
        if not interaction.extras.get(_NOTED):
            return
        try:
            await self.store.forget_pending(interaction.id)
        except Exception as exc:  # noqa: BLE001 - a stale row is only told "lost" after a crash, if alive
            log.warning("could not cross out interaction %s: %s", interaction.id, exc)

    async def tell_orphans(self, client: discord.Client) -> int:
        """Tell the members whose requests a dead process of our shards left unanswered; how many."""
        told = 0
        try:
            orphans = await self.store.take_orphaned_pending(self.process, time.time(), owns=self.owns)
        except Exception as exc:  # noqa: BLE001 - starting matters more; a next start tells them
            log.warning("could not look for requests a previous process lost: %s", exc)
            return 0
        for interaction_id, application_id, token in orphans:
            webhook = discord.Webhook.partial(application_id, token, client=client)
            try:
                # The first follow-up fills the "thinking…" message it was left with, private if that was.
                await webhook.send(LOST)
                told += 1
            except discord.HTTPException as exc:  # the token died meanwhile, or the message was removed
                log.info("could not tell interaction %s it was lost: %s", interaction_id, exc)
        if told:
            log.warning("told %d members that a previous process lost their requests", told)
        return told
