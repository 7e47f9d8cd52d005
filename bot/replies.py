"""Acknowledging and answering interactions, including the awkward case of an error after a deferral.

Discord fills a deferred "is thinking…" message with the first follow-up and keeps the deferral's
visibility: an error sent as an ephemeral follow-up after a *public* deferral would be shown to everyone.
So a failed public deferral is deleted first and the error then goes out as a fresh ephemeral message.
"""
from __future__ import annotations

import logging
from typing import Any

import discord

log = logging.getLogger(__name__)

_EPHEMERAL = "cratedigger.ephemeral"
_ANSWERED = "cratedigger.answered"


async def defer(interaction: discord.Interaction, *, ephemeral: bool = False) -> None:
    """Acknowledge now (Discord allows 3 s) and show "thinking…"; the answer comes with `answer`.

    The journal is written first, so that a process taking over after a crash can say the request was
    lost: written after the acknowledgement, a process killed between the two left a member "thinking…"
    with no record of it (bench_faults lost a /recommend so). Killed before the acknowledgement, the
    member sees Discord's "did not respond" and the successor's word fails harmlessly."""
    interaction.extras[_EPHEMERAL] = ephemeral
    journal = getattr(interaction.client, "journal", None)
    if journal is not None:
        await journal.accepted(interaction)
    await interaction.response.defer(thinking=True, ephemeral=ephemeral)


async def answer(interaction: discord.Interaction, **message: Any) -> discord.WebhookMessage:
    """The final answer to a deferred interaction (fills the "thinking…" message)."""
    sent = await interaction.followup.send(wait=True, **message)
    interaction.extras[_ANSWERED] = True
    return sent


async def tell(interaction: discord.Interaction, text: str) -> None:
    """A short private message to the user, whatever state the interaction is in."""
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True)
            return
        pending = (interaction.response.type is discord.InteractionResponseType.deferred_channel_message
                   and not interaction.extras.get(_ANSWERED))
        if pending and interaction.extras.get(_EPHEMERAL):
            await interaction.edit_original_response(content=text, embed=None, attachments=[], view=None)
            return
        if pending:
            await interaction.delete_original_response()
        await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException as exc:  # the token expired or Discord is unwell: nothing more to do
        log.warning("could not tell user %s (%s): %s", interaction.user.id, interaction.id, exc)
