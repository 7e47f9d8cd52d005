"""The world the fake Discord knows: users, guilds, roles, channels, members, and their JSON payloads.

Payload shapes follow Discord's API v10 as discord.py 2.7 parses them (the keys it indexes directly are
always present; optional ones are filled with what Discord sends by default).
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000
ALL_PERMISSIONS = (1 << 53) - 1
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
DEFAULT_EVERYONE_PERMISSIONS = sum(1 << bit for bit in (6, 10, 11, 14, 15, 16, 31))
"""What @everyone gets in a new server, in short: add reactions, view channels, send messages, embed links,
attach files, read history, use application commands. Nothing administrative."""

_counter = itertools.count()
_lock = threading.Lock()


def snowflake(at: float | None = None) -> int:
    """A real, time-ordered snowflake (made now, or at the Unix time `at`): discord.py derives an
    interaction's 15-minute expiry from its id."""
    with _lock:
        increment = next(_counter) & 0xFFF
    return ((int((time.time() if at is None else at) * 1000) - DISCORD_EPOCH_MS) << 22) | increment


def sum_bits(values: Any) -> int:
    """The union of permission bit sets."""
    out = 0
    for value in values:
        out |= value
    return out


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())


@dataclass
class User:
    id: int
    name: str
    bot: bool = False
    accepts_dms: bool = True
    """False: the user turned off direct messages from server members (Discord answers 50007)."""

    def payload(self) -> dict[str, Any]:
        return {"id": str(self.id), "username": self.name, "global_name": self.name, "discriminator": "0",
                "avatar": None, "bot": self.bot, "public_flags": 0, "flags": 0}


@dataclass
class Role:
    id: int
    name: str
    permissions: int = 0
    position: int = 1

    def payload(self) -> dict[str, Any]:
        return {"id": str(self.id), "name": self.name, "permissions": str(self.permissions),
                "position": self.position, "colors": {"primary_color": 0}, "hoist": False, "managed": False,
                "mentionable": False, "flags": 0}


@dataclass
class Overwrite:
    """A channel's permission overwrite for a role (`type` 0) or a member (`type` 1)."""

    id: int
    type: int
    allow: int = 0
    deny: int = 0

    def payload(self) -> dict[str, Any]:
        return {"id": str(self.id), "type": self.type, "allow": str(self.allow), "deny": str(self.deny)}


@dataclass
class Channel:
    id: int
    guild_id: int
    name: str
    position: int = 0
    overwrites: list[Overwrite] = field(default_factory=list)

    def deny(self, target: Role | Member, permissions: int) -> None:
        """Take `permissions` away from a role or a member in this channel (as a server admin would)."""
        kind = 1 if isinstance(target, Member) else 0
        self.overwrites.append(Overwrite(target.id, kind, deny=permissions))

    def payload(self) -> dict[str, Any]:
        return {"id": str(self.id), "guild_id": str(self.guild_id), "type": 0, "name": self.name,
                "position": self.position, "permission_overwrites": [o.payload() for o in self.overwrites],
                "nsfw": False, "parent_id": None, "topic": None, "rate_limit_per_user": 0,
                "last_message_id": None}


@dataclass
class Member:
    user: User
    guild: Guild
    roles: list[Role] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def permissions(self) -> int:
        """What Discord computes and sends as `member.permissions`: @everyone | each role; admin = all;
        the owner has everything."""
        value = self.guild.everyone.permissions
        for role in self.roles:
            value |= role.permissions
        if value & ADMINISTRATOR or self.guild.owner_id == self.user.id:
            return ALL_PERMISSIONS
        return value

    def payload(self, *, with_permissions: bool = False) -> dict[str, Any]:
        data = {"user": self.user.payload(), "roles": [str(r.id) for r in self.roles], "nick": None,
                "avatar": None, "joined_at": iso_now(), "premium_since": None, "deaf": False, "mute": False,
                "pending": False, "flags": 0, "communication_disabled_until": None}
        if with_permissions:
            data["permissions"] = str(self.permissions)
        return data


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    everyone: Role = field(init=False)
    roles: list[Role] = field(default_factory=list)
    channels: list[Channel] = field(default_factory=list)
    members: dict[int, Member] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.everyone = Role(self.id, "@everyone", DEFAULT_EVERYONE_PERMISSIONS, position=0)
        self.roles.insert(0, self.everyone)

    def add_role(self, name: str, permissions: int = 0) -> Role:
        role = Role(snowflake(), name, permissions, position=len(self.roles))
        self.roles.append(role)
        return role

    def add_channel(self, name: str) -> Channel:
        channel = Channel(snowflake(), self.id, name, position=len(self.channels))
        self.channels.append(channel)
        return channel

    def add_member(self, user: User, roles: list[Role] | None = None) -> Member:
        member = Member(user, self, list(roles or []))
        self.members[user.id] = member
        return member

    @property
    def default_channel(self) -> Channel:
        return self.channels[0]

    def permissions_in(self, member: Member, channel: Channel) -> int:
        """Discord's order: the member's guild permissions, then the channel's @everyone overwrite, the
        overwrites of the member's roles together, the member's own; without View Channel, nothing."""
        value = member.permissions
        if value == ALL_PERMISSIONS:
            return value
        overwrites = {(o.type, o.id): o for o in channel.overwrites}
        everyone = overwrites.get((0, self.id))
        if everyone is not None:
            value = (value & ~everyone.deny) | everyone.allow
        roles = [overwrites[(0, r.id)] for r in member.roles if (0, r.id) in overwrites]
        value &= ~sum_bits(o.deny for o in roles)
        value |= sum_bits(o.allow for o in roles)
        own = overwrites.get((1, member.id))
        if own is not None:
            value = (value & ~own.deny) | own.allow
        return value if value & VIEW_CHANNEL else 0

    def payload(self) -> dict[str, Any]:
        """GUILD_CREATE's `d`: everything discord.py caches for a guild."""
        return {
            "id": str(self.id), "name": self.name, "icon": None, "owner_id": str(self.owner_id),
            "unavailable": False, "member_count": len(self.members), "large": False, "features": [],
            "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
            "afk_timeout": 300, "mfa_level": 0, "nsfw_level": 0, "premium_tier": 0,
            "preferred_locale": "en-US", "system_channel_id": None, "joined_at": iso_now(),
            "roles": [r.payload() for r in self.roles],
            "channels": [c.payload() for c in self.channels],
            "members": [m.payload() for m in self.members.values()],
            "emojis": [], "stickers": [], "threads": [], "presences": [], "voice_states": [],
            "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
        }
