"""Interaction payloads built the way Discord builds them: from the command schema the bot synced.

A test names a command and passes Python values; the option types, choices and required options come
from what the bot registered, so a test cannot send something a Discord client could not.
"""
from __future__ import annotations

import secrets
from typing import Any

from tests.discord_server.entities import Channel, Member, iso_now, snowflake

APPLICATION_COMMAND, COMPONENT, AUTOCOMPLETE = 2, 3, 4
SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 3, 4, 5, 6, 7, 8, 9, 10, 11
BUTTON, STRING_SELECT = 2, 3


class SchemaError(AssertionError):
    """The test asked for something the synced commands do not allow (Discord's client would not send it)."""


def find_command(commands: list[dict[str, Any]], qualified: str) -> tuple[dict[str, Any], list[str], dict]:
    """(top-level command, sub-command path, leaf schema) for e.g. 'library add'."""
    top_name, *path = qualified.split()
    top = next((c for c in commands if c["name"] == top_name and c.get("type", 1) == 1), None)
    if top is None:
        raise SchemaError(f"/{top_name} is not registered here (registered: {[c['name'] for c in commands]})")
    leaf: dict[str, Any] = top
    for name in path:
        leaf = next((o for o in leaf.get("options", []) if o["name"] == name
                     and o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)), None)  # type: ignore[assignment]
        if leaf is None:
            raise SchemaError(f"/{qualified}: no sub-command {name!r}")
    if any(o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in leaf.get("options", [])):
        raise SchemaError(f"/{qualified} needs a sub-command")
    return top, path, leaf


def command_data(commands: list[dict[str, Any]], qualified: str, values: dict[str, Any], *,
                 focused: str | None = None) -> dict[str, Any]:
    """`data` of an application-command (or autocomplete, when `focused` names the option being typed)."""
    top, path, leaf = find_command(commands, qualified)
    schema = {o["name"]: o for o in leaf.get("options", [])}
    resolved: dict[str, dict[str, Any]] = {}
    options: list[dict[str, Any]] = []
    for name, value in values.items():
        if name not in schema:
            raise SchemaError(f"/{qualified} has no option {name!r} (has {sorted(schema)})")
        opt = schema[name]
        options.append(_option(opt, value, resolved, focused=name == focused))
    if focused is None:
        missing = [n for n, o in schema.items() if o.get("required") and n not in values]
        if missing:
            raise SchemaError(f"/{qualified} needs {missing}")
    elif not schema.get(focused, {}).get("autocomplete"):
        raise SchemaError(f"/{qualified} option {focused!r} has no autocomplete")
    return _wrap(top, path, options, resolved if focused is None else {})


def raw_command_data(commands: list[dict[str, Any]], qualified: str, options: list[dict[str, Any]],
                     resolved: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """`data` of an application command whose leaf `options` are sent as given: no type, choice, range or
    required-option checks. A modified client can make Discord relay such values; the bot must cope."""
    top, path, _ = find_command(commands, qualified)
    return _wrap(top, path, options, resolved or {})


def _wrap(top: dict[str, Any], path: list[str], options: list[dict[str, Any]],
          resolved: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Nest the leaf options in their sub-commands, as Discord does."""
    for name in reversed(path):
        options = [{"type": SUB_COMMAND, "name": name, "options": options}]
    data: dict[str, Any] = {"id": top["id"], "name": top["name"], "type": 1, "options": options}
    if top.get("guild_id"):
        data["guild_id"] = top["guild_id"]
    if resolved:
        data["resolved"] = resolved
    return data


def _option(opt: dict[str, Any], value: Any, resolved: dict[str, dict[str, Any]], *,
            focused: bool) -> dict[str, Any]:
    kind, name = opt["type"], opt["name"]
    out: dict[str, Any] = {"type": kind, "name": name}
    if focused:
        out.update(value=str(value), focused=True)
        return out
    if kind == ATTACHMENT:
        if not isinstance(value, dict) or "url" not in value:
            raise SchemaError(f"option {name!r} is an attachment: pass server.attachment(...)")
        resolved.setdefault("attachments", {})[value["id"]] = value
        out["value"] = value["id"]
        return out
    if kind == USER:
        assert isinstance(value, Member)
        resolved.setdefault("users", {})[str(value.id)] = value.user.payload()
        member = value.payload(with_permissions=True)
        member.pop("user")
        resolved.setdefault("members", {})[str(value.id)] = member
        out["value"] = str(value.id)
        return out
    expected = {STRING: str, INTEGER: int, BOOLEAN: bool, NUMBER: (int, float)}.get(kind)
    if expected is None or not isinstance(value, expected):
        raise SchemaError(f"option {name!r} has type {kind}; got {value!r}")
    choices = opt.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise SchemaError(f"option {name!r} must be one of {[c['value'] for c in choices]}")
    if kind in (INTEGER, NUMBER):
        lo, hi = opt.get("min_value"), opt.get("max_value")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise SchemaError(f"option {name!r} must be within [{lo}, {hi}]")
    out["value"] = value
    return out


def interaction_payload(*, kind: int, application_id: int, member: Member, channel: Channel,
                        data: dict[str, Any], size_limit: int, message: dict[str, Any] | None = None,
                        created_at: float | None = None) -> dict[str, Any]:
    """A full INTERACTION_CREATE `d` from `member` in `channel`, its id made at `created_at` (Unix time;
    default now). `member.permissions` and `app_permissions` (the bot's) are those in that channel."""
    guild = member.guild
    bot = guild.members.get(application_id)
    sender = member.payload(with_permissions=True)
    sender["permissions"] = str(guild.permissions_in(member, channel))
    payload: dict[str, Any] = {
        "id": str(snowflake(created_at)), "application_id": str(application_id), "type": kind,
        "token": "ix-" + secrets.token_urlsafe(48), "version": 1, "data": data,
        "guild_id": str(guild.id), "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
        "channel_id": str(channel.id), "channel": channel.payload(),
        "member": sender,
        "app_permissions": str(guild.permissions_in(bot, channel) if bot else 0),
        "locale": "en-US", "guild_locale": "en-US", "entitlements": [], "entitlement_sku_ids": [],
        "authorizing_integration_owners": {"0": str(guild.id)}, "context": 0,
        "attachment_size_limit": size_limit,
    }
    if message is not None:
        payload["message"] = message
    return payload


def attachment_payload(attachment_id: int, filename: str, size: int, content_type: str,
                       url: str) -> dict[str, Any]:
    return {"id": str(attachment_id), "filename": filename, "size": size, "url": url, "proxy_url": url,
            "content_type": content_type, "ephemeral": True}


def message_payload(message: Any, *, author: dict[str, Any], application_id: int, guild_id: int | None,
                    attachments: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON Discord returns for a message the application sent: an interaction's (through its
    webhook) or one the bot posted in a channel with its own token."""
    posted = message.interaction_id is None
    return {
        "id": str(message.id), "channel_id": str(message.channel_id),
        **({"guild_id": str(guild_id)} if guild_id else {}),
        "author": author, "content": message.content or "", "embeds": message.embeds,
        "components": message.components, "attachments": attachments, "flags": message.flags,
        "type": 0 if posted else 20, "timestamp": iso_now(),
        "edited_timestamp": iso_now() if len(message.history) > 1 else None,
        "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [], "pinned": False,
        "webhook_id": None if posted else str(application_id), "application_id": str(application_id),
    }
