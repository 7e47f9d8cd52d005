"""Messages the bot sends with its own token rather than through an interaction: posted in a guild channel
under that channel's permissions, as Discord computes and enforces them, or in a direct message, which a
member may have turned off. An interaction token's lifetime does not apply to these, which is what makes
them the place for progress that outlasts it.

Discord's answers modelled here: 50001 Missing Access (no View Channel), 50013 Missing Permissions (no Send
Messages; an embed-only message without Embed Links; files without Attach Files), 50007 Cannot send
messages to this user (direct messages off), 10003 Unknown Channel, 10008 Unknown Message.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.discord_server.entities import (
    ATTACH_FILES,
    EMBED_LINKS,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Channel,
    Guild,
    User,
    snowflake,
)
from tests.discord_server.records import MessageRecord
from tests.discord_server.responses import error_response, json_response
from tests.discord_server.validation import message_problems

if TYPE_CHECKING:
    from tests.discord_server.server import FakeDiscord


class ChannelMessages:
    """The bot's own messages: `POST/PATCH /channels/{id}/messages[/{id}]`, `POST /users/@me/channels`."""

    def __init__(self, server: FakeDiscord) -> None:
        self.server = server
        self.dm_channels: dict[int, User] = {}
        self.refused: list[str] = []
        """Requests Discord would refuse (missing permissions, direct messages off), for tests to read."""

    def posted_in(self, channel_id: int) -> list[MessageRecord]:
        """The bot's messages in a channel or a direct-message channel, oldest first, as they stand now."""
        return [m for m in self.server.messages.values()
                if m.interaction_id is None and m.channel_id == channel_id and not m.deleted]

    def dm_channel_of(self, user: User) -> int | None:
        return next((cid for cid, u in self.dm_channels.items() if u.id == user.id), None)

    def guild_of(self, channel_id: int) -> tuple[Guild, Channel] | None:
        for guild in self.server.guilds.values():
            for channel in guild.channels:
                if channel.id == channel_id:
                    return guild, channel
        return None

    # ------------------------------------------------------------------------------------------ routes
    def open_dm(self, body: dict[str, Any]) -> web.Response:
        user = self.server.users.get(int(body.get("recipient_id") or 0))
        if user is None:
            return error_response(400, 50033, "Invalid Recipient(s)")
        channel_id = self.dm_channel_of(user) or snowflake()
        self.dm_channels[channel_id] = user
        return json_response({"id": str(channel_id), "type": 1, "recipients": [user.payload()],
                              "last_message_id": None, "flags": 0})

    async def post(self, request: web.Request, channel_id: int) -> web.Response:
        body, files = await self.server._read_body(request)
        refusal = self._refusal(channel_id, body, files, creating=True)
        if refusal is not None:
            return refusal
        message = MessageRecord(snowflake(), channel_id, None, flags=int(body.get("flags") or 0))
        self.server.messages[message.id] = message
        self.server._apply(message, body, files)
        return json_response(self.server._message_json(message))

    async def edit(self, request: web.Request, channel_id: int, message_id: int) -> web.Response:
        message = self.server.messages.get(message_id)
        if message is None or message.deleted or message.channel_id != channel_id:
            return error_response(404, 10008, "Unknown Message")
        if message.interaction_id is not None:  # an interaction's message: edited through its webhook
            return error_response(403, 50005, "Cannot edit a message authored by another user")
        body, files = await self.server._read_body(request)
        refusal = self._refusal(channel_id, body, files, creating=False)
        if refusal is not None:
            return refusal
        self.server._apply(message, body, files)
        return json_response(self.server._message_json(message))

    def _refusal(self, channel_id: int, body: dict[str, Any], files: list[Any], *,
                 creating: bool) -> web.Response | None:
        """Discord's answer when it would not take this message, else None."""
        if channel_id in self.dm_channels:
            user = self.dm_channels[channel_id]
            if creating and not user.accepts_dms:
                return self._refuse(f"direct message to {user.name}, who accepts none",
                                    403, 50007, "Cannot send messages to this user")
        else:
            place = self.guild_of(channel_id)
            if place is None:
                return error_response(404, 10003, "Unknown Channel")
            guild, channel = place
            bot = guild.members.get(self.server.application_id)
            allowed = guild.permissions_in(bot, channel) if bot else 0
            needed = SEND_MESSAGES if creating else 0
            if body.get("embeds") and not body.get("content"):
                needed |= EMBED_LINKS
            if files:
                needed |= ATTACH_FILES
            if not allowed & VIEW_CHANNEL:
                return self._refuse(f"message in #{channel.name} without View Channel", 403, 50001,
                                    "Missing Access")
            if needed & ~allowed:
                return self._refuse(f"message in #{channel.name} without permissions {needed & ~allowed:#x}",
                                    403, 50013, "Missing Permissions")
            if not allowed & EMBED_LINKS:
                body.pop("embeds", None)  # with text beside them, Discord drops the embeds silently
        problems = message_problems(body)
        if problems:
            return self._refuse("; ".join(problems), 400, 50035, "Invalid Form Body: " + "; ".join(problems))
        return None

    def _refuse(self, why: str, status: int, code: int, message: str) -> web.Response:
        self.refused.append(why)
        return error_response(status, code, message)
