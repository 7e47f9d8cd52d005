"""A local Discord: REST API, gateway and CDN in one aiohttp app, for the real discord.py client.

It speaks what a slash-command bot uses (login, READY/GUILD_CREATE, heartbeats, INTERACTION_CREATE,
sharding: `GET /gateway/bot` hands out `shard_count`, IDENTIFY must name a shard when there is more than one
(close 4011 otherwise, 4010 for a wrong one), and each guild's events go only to the session of its shard,
interaction callbacks, webhook follow-ups and edits with files, command sync, attachment downloads, the
bot's own channel and direct messages) and enforces what Discord enforces where a bot can get it wrong: the
3-s acknowledgement deadline, one callback per interaction, follow-ups only after an acknowledgement, a
deferred reply being filled by the first follow-up (with the deferral's ephemeral flag), the interaction
token's lifetime (15 minutes; `token_lifetime` shortens it), channel permissions, message and component
limits. Everything the bot
sends is recorded, decoded, for tests to assert on; anything it calls that is not modelled is recorded in
`unhandled` and answered 404.
"""
from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import secrets
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from tests.discord_server.channels import ChannelMessages
from tests.discord_server.entities import Channel, Guild, Member, User, snowflake
from tests.discord_server.interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    BUTTON,
    COMPONENT,
    attachment_payload,
    command_data,
    interaction_payload,
    message_payload,
    raw_command_data,
)
from tests.discord_server.records import (
    EPHEMERAL,
    LOADING,
    Callback,
    FileRecord,
    InteractionRecord,
    MessageRecord,
)
from tests.discord_server.responses import error_response as _error
from tests.discord_server.responses import json_response as _json
from tests.discord_server.validation import choice_problems, message_problems

log = logging.getLogger(__name__)

GUILDS_INTENT = 1 << 0
DEFAULT_SIZE_LIMIT = 10 * 1024 * 1024
"""Discord's upload limit for bots and members of unboosted servers (10 MiB)."""
TOKEN_LIFETIME = 15 * 60.0
"""How long Discord honours an interaction's token for follow-ups and edits, from the interaction."""




class FakeDiscord:
    """One application (the bot), any number of guilds and users, one gateway session at a time."""

    def __init__(self, *, token: str = "test-token", ack_deadline: float | None = 3.0,
                 size_limit: int = DEFAULT_SIZE_LIMIT, heartbeat_interval_ms: int = 41_250,
                 shard_count: int = 1, token_lifetime: float = TOKEN_LIFETIME) -> None:
        self.token = token
        self.shard_count = shard_count
        self.ack_deadline = ack_deadline
        self.token_lifetime = token_lifetime
        """Seconds an interaction's token is honoured, for interactions dispatched from now on. discord.py
        takes an interaction to expire 15 minutes after its id's timestamp, so a shorter lifetime is given
        ids that many seconds older: the bot and this server then agree on when the token dies, as a bot
        and Discord do."""
        self.ids_show_lifetime = True
        """False: ids carry the dispatch time whatever the lifetime, so discord.py believes in 15 minutes
        while this server ends the token sooner (a bot whose clock runs behind Discord's)."""
        self.size_limit = size_limit
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.heartbeat_ack_delay = 0.02
        """A network's round trip: discord.py's keep-alive thread records when it sent a heartbeat only
        after the loop confirms the send, so an instant ACK can beat it and read as "41 s behind"."""
        self.application_id = snowflake()
        self.bot_user = User(self.application_id, "cratedigger", bot=True)
        self.owner = User(snowflake(), "owner")
        self.users: dict[int, User] = {self.bot_user.id: self.bot_user, self.owner.id: self.owner}
        self.guilds: dict[int, Guild] = {}
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.sync_requests: list[tuple[int | None, list[dict[str, Any]]]] = []
        self.identifies: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.interactions: dict[int, InteractionRecord] = {}
        self.messages: dict[int, MessageRecord] = {}
        self.cdn: dict[int, FileRecord] = {}
        self.cdn_hits: Counter[int] = Counter()
        self.unhandled: list[str] = []
        self.posts = ChannelMessages(self)
        """The bot's own channel and direct messages, and what Discord refused of them."""
        self._by_token: dict[str, InteractionRecord] = {}
        self._sessions: list[_GatewaySession] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ----------------------------------------------------------------- lifecycle and addresses
    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/attachments/{channel}/{attachment}/{filename}", self._cdn)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for session in list(self._sessions):
            await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # ----------------------------------------------------------------- the world
    def add_user(self, name: str) -> User:
        user = User(snowflake(), name)
        self.users[user.id] = user
        return user

    def shard_of(self, guild_id: int) -> int:
        """Discord's rule: (guild_id >> 22) % shard_count."""
        return (guild_id >> 22) % self.shard_count

    def add_guild(self, name: str, *, owner: User | None = None, shard: int | None = None) -> Guild:
        """A guild with a #general channel, its owner and the bot as members (on `shard`, if given)."""
        owner = owner or self.owner
        guild_id = snowflake()
        while shard is not None and self.shard_of(guild_id) != shard:
            guild_id = snowflake()
        guild = Guild(guild_id, name, owner.id)
        guild.add_channel("general")
        guild.add_member(owner)
        guild.add_member(self.bot_user)
        self.guilds[guild.id] = guild
        for session in self._sessions:
            if session.ready and session.intents & GUILDS_INTENT and session.owns(guild.id):
                asyncio.ensure_future(session.dispatch("GUILD_CREATE", guild.payload()))
        return guild

    def attachment(self, filename: str, data: bytes, *, content_type: str | None = None,
                   channel: Channel | None = None, size: int | None = None) -> dict[str, Any]:
        """An uploaded file as Discord resolves it in an interaction; the bytes are served by our CDN.

        `size` is what the payload declares (the real length unless given: a crafted upload may lie)."""
        attachment_id = snowflake()
        content_type = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        self.cdn[attachment_id] = FileRecord(filename, content_type, data)
        channel_id = channel.id if channel else 0
        path = urllib.parse.quote(filename, safe="")
        url = f"{self.base_url}/cdn/attachments/{channel_id}/{attachment_id}/{path}"
        return attachment_payload(attachment_id, filename, len(data) if size is None else size, content_type,
                                  url)

    def commands_for(self, guild_id: int | None) -> list[dict[str, Any]]:
        """What a member of `guild_id` can invoke: that guild's commands, then global ones."""
        local = self.guild_commands.get(guild_id, []) if guild_id else []
        names = {c["name"] for c in local}
        return local + [c for c in self.global_commands if c["name"] not in names]

    # ----------------------------------------------------------------- driving the bot
    async def slash(self, member: Member, command: str, *, channel: Channel | None = None,
                    **options: Any) -> InteractionRecord:
        """Dispatch `/command` with `options` (names as registered) from `member`; returns at once."""
        data = command_data(self.commands_for(member.guild.id), command, options)
        return await self._send(APPLICATION_COMMAND, member, channel, data)

    async def autocomplete(self, member: Member, command: str, focused: str, *,
                           channel: Channel | None = None, **options: Any) -> InteractionRecord:
        data = command_data(self.commands_for(member.guild.id), command, options, focused=focused)
        return await self._send(AUTOCOMPLETE, member, channel, data)

    async def click(self, member: Member, message: MessageRecord, custom_id: str) -> InteractionRecord:
        component = message.component(custom_id)
        if component.get("disabled"):
            raise AssertionError(f"button {custom_id!r} is disabled: a user cannot click it")
        data = {"custom_id": custom_id, "component_type": component["type"]}
        return await self._send(COMPONENT, member, None, data, message=message)

    async def select(self, member: Member, message: MessageRecord, custom_id: str,
                     values: list[str]) -> InteractionRecord:
        component = message.component(custom_id)
        allowed = {o["value"] for o in component.get("options", [])}
        if component["type"] == BUTTON or not set(values) <= allowed:
            raise AssertionError(f"{values} are not options of select {custom_id!r} ({sorted(allowed)})")
        data = {"custom_id": custom_id, "component_type": component["type"], "values": values}
        return await self._send(COMPONENT, member, None, data, message=message)

    async def raw_command(self, member: Member, command: str, options: list[dict[str, Any]], *,
                          resolved: dict[str, dict[str, Any]] | None = None,
                          autocomplete: bool = False) -> InteractionRecord:
        """Dispatch `/command` with `options` exactly as given (values outside the choices, the range or
        the type; see `raw_command_data`): what a modified client can get Discord to relay."""
        data = raw_command_data(self.commands_for(member.guild.id), command, options, resolved)
        return await self._send(AUTOCOMPLETE if autocomplete else APPLICATION_COMMAND, member, None, data)

    async def raw_component(self, member: Member, message: MessageRecord, data: dict[str, Any], *,
                            components: list[dict[str, Any]] | None = None) -> InteractionRecord:
        """A component interaction on `message` with `data` as given (any custom_id, type or select values).

        `components`, when given, replaces the message's components in the payload: a click on a message
        that carries them, such as one an older version of the bot posted."""
        return await self._send(COMPONENT, member, None, data, message=message, components=components)

    async def wait_for(self, predicate: Callable[[], bool], *, timeout: float = 30.0) -> None:
        """Wait until `predicate()` is true; it is re-checked after every request the bot makes."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def reply(self, ix: InteractionRecord, *, timeout: float = 30.0) -> MessageRecord:
        """The interaction's last visible message, once there is one."""
        await self.wait_for(lambda: bool(ix.messages) or bool(ix.refused), timeout=timeout)
        return ix.last()

    async def wait_ready(self, *, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: any(s.ready for s in self._sessions), timeout=timeout)

    async def wait_shards(self, *, timeout: float = 60.0) -> None:
        """Until every shard has a ready session."""
        await self.wait_for(lambda: {s.shard[0] for s in self._sessions if s.ready and s.shard}
                            == set(range(self.shard_count)), timeout=timeout)

    async def _send(self, kind: int, member: Member, channel: Channel | None, data: dict[str, Any],
                    message: MessageRecord | None = None,
                    components: list[dict[str, Any]] | None = None) -> InteractionRecord:
        sessions = [s for s in self._sessions if s.ready and s.owns(member.guild.id)]
        if not sessions:
            raise AssertionError(f"no bot is connected to the gateway for shard {self.shard_of(member.guild.id)}")
        message_json = None
        if message is not None:
            channel = next(c for c in member.guild.channels if c.id == message.channel_id)
            message_json = self._message_json(message)
            if components is not None:
                message_json["components"] = components
        lifetime = self.token_lifetime
        created = time.time() - (TOKEN_LIFETIME - lifetime) if self.ids_show_lifetime else None
        payload = interaction_payload(
            kind=kind, application_id=self.application_id, member=member,
            channel=channel or member.guild.default_channel, data=data, size_limit=self.size_limit,
            message=message_json, created_at=created,
        )
        ix = InteractionRecord(int(payload["id"]), payload["token"], kind, payload, member.id,
                               member.guild.id, shard=self.shard_of(member.guild.id))
        ix.expires_at = ix.sent_at + lifetime
        self.interactions[ix.id] = ix
        self._by_token[ix.token] = ix
        for session in sessions:
            await session.dispatch("INTERACTION_CREATE", payload)
        return ix

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ----------------------------------------------------------------- gateway
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        session = _GatewaySession(self, ws)
        self._sessions.append(session)
        try:
            await session.send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await session.received(json.loads(msg.data))
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            self._sessions.remove(session)
            await self._notify()
        return ws

    def _ready_payload(self, session: _GatewaySession, session_id: str) -> dict[str, Any]:
        shard = {"shard": list(session.shard)} if session.shard else {}
        return {
            "v": 10, "user": {**self.bot_user.payload(), "verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds if session.owns(g)], **shard,
            "session_id": session_id, "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [], "relationships": [], "presences": [], "_trace": ["fake-discord"],
        }

    # ----------------------------------------------------------------- CDN
    async def _cdn(self, request: web.Request) -> web.Response:
        attachment_id = int(request.match_info["attachment"])
        self.cdn_hits[attachment_id] += 1
        record = self.cdn.get(attachment_id)
        if record is None:
            return web.Response(status=404)
        # Discord's CDN answers with a type it determined, never a declared one that breaks the header.
        safe_type = record.content_type.isascii() and record.content_type.isprintable()
        return web.Response(body=record.data, headers={
            "Content-Type": record.content_type if safe_type else "application/octet-stream"})

    # ----------------------------------------------------------------- REST
    async def _api(self, request: web.Request) -> web.StreamResponse:
        parts = request.match_info["tail"].strip("/").split("/")
        method = request.method
        try:
            if parts[0] == "interactions" and len(parts) == 4 and parts[3] == "callback" and method == "POST":
                return await self._callback(request, int(parts[1]), parts[2])
            if parts[0] == "webhooks" and len(parts) >= 3:
                return await self._webhook(request, int(parts[1]), parts[2], parts[3:])
            if request.headers.get("Authorization") != f"Bot {self.token}":
                return _error(401, 0, "401: Unauthorized")
            if parts[0] == "channels" and len(parts) in (3, 4) and parts[2] == "messages":
                if len(parts) == 3 and method == "POST":
                    return await self.posts.post(request, int(parts[1]))
                if len(parts) == 4 and method == "PATCH":
                    return await self.posts.edit(request, int(parts[1]), int(parts[3]))
            if parts == ["users", "@me", "channels"] and method == "POST":
                return self.posts.open_dm(await request.json())
            if parts == ["users", "@me"] and method == "GET":
                return _json({**self.bot_user.payload(), "verified": True, "mfa_enabled": False})
            if parts == ["oauth2", "applications", "@me"] and method == "GET":
                return _json(self._application_payload())
            if parts in (["gateway"], ["gateway", "bot"]) and method == "GET":
                return _json({"url": self.gateway_url, "shards": self.shard_count, "session_start_limit": {
                    "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}})
            if (parts[0] == "applications" and int(parts[1]) == self.application_id
                    and parts[-1] == "commands"):
                guild_id = int(parts[3]) if len(parts) == 5 and parts[2] == "guilds" else None
                if method == "PUT":
                    return _json(await self._sync(guild_id, await request.json()))
                if method == "GET":
                    return _json(self.guild_commands.get(guild_id, []) if guild_id else self.global_commands)
        finally:
            await self._notify()
        self.unhandled.append(f"{method} /{'/'.join(parts)}")
        log.warning("fake discord: unhandled %s /%s", method, "/".join(parts))
        return _error(404, 0, "404: Not Found")

    def _application_payload(self) -> dict[str, Any]:
        return {"id": str(self.application_id), "name": self.bot_user.name, "icon": None,
                "description": "", "bot_public": True, "bot_require_code_grant": False,
                "owner": self.owner.payload(), "team": None, "verify_key": "0" * 64, "flags": 0,
                "bot": self.bot_user.payload(), "install_params": {"scopes": ["bot", "applications.commands"],
                                                                    "permissions": "0"}}

    async def _sync(self, guild_id: int | None, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Bulk overwrite: keep ids of commands whose name is unchanged, as Discord does."""
        current = self.guild_commands.get(guild_id, []) if guild_id else self.global_commands
        old = {c["name"]: c for c in current}
        stored = []
        for cmd in commands:
            entry = {**cmd, "id": old.get(cmd["name"], {}).get("id") or str(snowflake()),
                     "application_id": str(self.application_id), "version": str(snowflake()),
                     "type": cmd.get("type", 1), "options": cmd.get("options", []),
                     # Discord answers permissions as strings whatever the client sent
                     "default_member_permissions": None if cmd.get("default_member_permissions") is None
                     else str(cmd["default_member_permissions"])}
            if guild_id:
                entry["guild_id"] = str(guild_id)
            stored.append(entry)
        if guild_id:
            self.guild_commands[guild_id] = stored
        else:
            self.global_commands = stored
        self.sync_requests.append((guild_id, commands))
        return stored

    async def _read_body(self, request: web.Request) -> tuple[dict[str, Any], list[FileRecord]]:
        """JSON, or multipart with `payload_json` and `files[n]` parts (how discord.py sends files)."""
        if not request.content_type.startswith("multipart/"):
            return (await request.json() if request.can_read_body else {}), []
        payload: dict[str, Any] = {}
        files: list[FileRecord] = []
        reader = await request.multipart()
        async for part in reader:
            if part.name == "payload_json":
                payload = json.loads(await part.text())
            elif part.name and part.name.startswith("files["):
                files.append(FileRecord(part.filename or "file", part.headers.get("Content-Type", ""),
                                        bytes(await part.read())))
        return payload, files

    async def _callback(self, request: web.Request, interaction_id: int, token: str) -> web.Response:
        ix = self.interactions.get(interaction_id)
        if ix is None or ix.token != token:
            return _error(404, 10062, "Unknown interaction")
        body, files = await self._read_body(request)
        now = time.monotonic()
        if ix.callbacks:
            ix.refused.append("callback after the interaction was already acknowledged")
            return _error(400, 40060, "Interaction has already been acknowledged.")
        if self.ack_deadline is not None and now - ix.sent_at > self.ack_deadline:
            ix.refused.append(f"callback {now - ix.sent_at:.2f} s after the interaction (limit "
                              f"{self.ack_deadline:g} s)")
            return _error(404, 10062, "Unknown interaction")
        kind, data = int(body["type"]), body.get("data") or {}
        problems = choice_problems(data.get("choices", [])) if kind == 8 else message_problems(data)
        if problems:
            ix.refused.append("; ".join(problems))
            return _error(400, 50035, "Invalid Form Body: " + "; ".join(problems))
        ix.callbacks.append(Callback(kind, data, files, now))
        message: MessageRecord | None = None
        if kind == 4:
            message = self._new_message(ix, data, files)
            ix.original = message
        elif kind == 5:
            message = self._new_message(ix, {"flags": LOADING | (data.get("flags", 0) & EPHEMERAL)}, [])
            ix.original = message
        elif kind in (6, 7):  # a component's own message becomes the interaction's @original
            message = self.messages.get(int(ix.payload.get("message", {}).get("id", 0)))
            if message is None:
                return _error(400, 50035, "message update on an interaction without a message")
            ix.original = message
            if kind == 7:
                self._apply(message, data, files)
                ix.answered_at = now
        response: dict[str, Any] = {"interaction": {
            "id": str(ix.id), "type": ix.type, "activity_instance_id": None,
            "response_message_id": str(message.id) if message else None,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(message and message.ephemeral)}}
        if message is not None:
            response["resource"] = {"type": kind, "message": self._message_json(message)}
        else:
            response["resource"] = {"type": kind}
        return _json(response)

    async def _webhook(self, request: web.Request, webhook_id: int, token: str,
                       rest: list[str]) -> web.Response:
        ix = self._by_token.get(token)
        method = request.method
        if ix is not None and time.monotonic() >= ix.expires_at:
            age = time.monotonic() - ix.sent_at
            ix.refused.append(f"{method} webhook {age:.1f} s after the interaction, with its expired token")
            return _error(401, 50027, "Invalid Webhook Token")
        if webhook_id != self.application_id or ix is None or not ix.callbacks:
            if ix is not None:
                ix.refused.append(f"{method} webhook before the interaction was acknowledged")
            return _error(404, 10015, "Unknown Webhook")
        if not rest and method == "POST":
            body, files = await self._read_body(request)
            problems = message_problems(body)
            if problems:
                ix.refused.append("; ".join(problems))
                return _error(400, 50035, "Invalid Form Body: " + "; ".join(problems))
            original = ix.original
            if original is not None and original.loading and not original.deleted:
                # The first follow-up after a deferral fills the "thinking" message, keeping its flags.
                self._apply(original, body, files)
                return _json(self._message_json(original))
            message = self._new_message(ix, body, files)
            ix.followups.append(message)
            return _json(self._message_json(message))
        if len(rest) == 2 and rest[0] == "messages":
            message = ix.original if rest[1] == "@original" else self.messages.get(int(rest[1]))
            if message is None or message.deleted or (message is not ix.original
                                                      and message.interaction_id != ix.id):
                return _error(404, 10008, "Unknown Message")
            if method == "GET":
                return _json(self._message_json(message))
            if method == "PATCH":
                body, files = await self._read_body(request)
                problems = message_problems(body)
                if problems:
                    ix.refused.append("; ".join(problems))
                    return _error(400, 50035, "Invalid Form Body: " + "; ".join(problems))
                self._apply(message, body, files)
                return _json(self._message_json(message))
            if method == "DELETE":
                message.deleted = True
                return web.Response(status=204)
        self.unhandled.append(f"{method} /webhooks/{webhook_id}/<token>/{'/'.join(rest)}")
        return _error(404, 0, "404: Not Found")

    # ----------------------------------------------------------------- messages
    def _new_message(self, ix: InteractionRecord, data: dict[str, Any],
                     files: list[FileRecord]) -> MessageRecord:
        channel_id = int(ix.payload["channel_id"])
        message = MessageRecord(snowflake(), channel_id, ix.id, flags=int(data.get("flags", 0)))
        self.messages[message.id] = message
        self._apply(message, data, files)
        return message

    def _apply(self, message: MessageRecord, data: dict[str, Any], files: list[FileRecord]) -> None:
        """Create or edit: given keys replace, absent keys stay; `attachments` lists what to keep."""
        for key in ("content", "embeds", "components", "allowed_mentions"):
            if key in data:
                empty: Any = "" if key == "content" else [] if key != "allowed_mentions" else None
                setattr(message, key, data[key] if data[key] is not None else empty)
        if message.history:  # an edit (or filling a deferral) never changes whether it is ephemeral
            asked = int(data.get("flags") or 0) & ~(EPHEMERAL | LOADING)
            message.flags = asked | (message.flags & EPHEMERAL)
        if "attachments" in data:
            keep = {int(a["id"]) for a in data["attachments"] if int(a["id"]) in message.attachment_ids}
            kept = [(i, f) for i, f in zip(message.attachment_ids, message.files, strict=True) if i in keep]
            message.attachment_ids = [i for i, _ in kept]
            message.files = [f for _, f in kept]
        for record in files:
            attachment_id = snowflake()
            self.cdn[attachment_id] = record
            message.attachment_ids.append(attachment_id)
            message.files.append(record)
        message.history.append({"at": time.monotonic(), "content": message.content, "embeds": message.embeds,
                                "components": message.components, "flags": message.flags,
                                "files": [f.filename for f in message.files]})
        ix = self.interactions.get(message.interaction_id)  # type: ignore[arg-type]
        if ix is not None and not message.loading and ix.answered_at is None:
            ix.answered_at = time.monotonic()

    def _message_json(self, message: MessageRecord) -> dict[str, Any]:
        attachments = [
            attachment_payload(i, f.filename, len(f.data), f.content_type,
                               f"{self.base_url}/cdn/attachments/{message.channel_id}/{i}/{f.filename}")
            for i, f in zip(message.attachment_ids, message.files, strict=True)
        ]
        ix = self.interactions.get(message.interaction_id)  # type: ignore[arg-type]
        place = self.posts.guild_of(message.channel_id)
        guild_id = ix.guild_id if ix is not None else place[0].id if place else None
        return message_payload(message, author=self.bot_user.payload(), application_id=self.application_id,
                               guild_id=guild_id, attachments=attachments)


class _GatewaySession:
    """One websocket: HELLO is sent on connect; IDENTIFY gets READY and a GUILD_CREATE per guild."""

    def __init__(self, server: FakeDiscord, ws: web.WebSocketResponse) -> None:
        self.server = server
        self.ws = ws
        self.seq = 0
        self.ready = False
        self.intents = 0
        self.shard: tuple[int, int] | None = None
        self._send_lock = asyncio.Lock()

    def owns(self, guild_id: int) -> bool:
        """Whether this session gets the guild's events: an unsharded session gets every guild's."""
        return self.shard is None or self.server.shard_of(guild_id) == self.shard[0]

    async def send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(message))

    def _ack(self) -> None:
        asyncio.ensure_future(self.send({"op": 11, "d": None}))

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.seq += 1
        await self.send({"op": 0, "t": event, "s": self.seq, "d": data})

    async def received(self, message: dict[str, Any]) -> None:
        op, data = message.get("op"), message.get("d")
        server = self.server
        if op == 1:
            server.heartbeats += 1
            asyncio.get_running_loop().call_later(server.heartbeat_ack_delay, self._ack)
            await server._notify()
        elif op == 2:
            if data.get("token") != server.token:
                await self.ws.close(code=4004, message=b"Authentication failed.")
                return
            server.identifies.append(data)
            shard = data.get("shard")
            if shard is None and server.shard_count > 1:
                await self.ws.close(code=4011, message=b"Sharding required.")
                return
            if shard is not None and (len(shard) != 2 or shard[1] != server.shard_count
                                      or not 0 <= shard[0] < shard[1]):
                await self.ws.close(code=4010, message=b"Invalid shard.")
                return
            self.shard = (int(shard[0]), int(shard[1])) if shard is not None else None
            self.intents = int(data.get("intents", 0))
            await self.dispatch("READY", server._ready_payload(self, secrets.token_hex(16)))
            if data.get("intents", 0) & GUILDS_INTENT:  # without it Discord sends no guild events
                for guild in list(server.guilds.values()):
                    if self.owns(guild.id):
                        await self.dispatch("GUILD_CREATE", guild.payload())
            self.ready = True
            await server._notify()
        elif op == 6:
            await self.send({"op": 9, "d": False})  # no resumable sessions here: identify again
