"""Server-side checks: who may administer the library, and the heavy-work cooldown.

`default_member_permissions` only hides commands in Discord's UI (server admins can override it), so the
permission that matters is checked here, on every call."""
from __future__ import annotations

import logging

import discord

from bot.errors import Refusal

log = logging.getLogger(__name__)
_warned: set[tuple[int | None, str, int]] = set()
"""(guild, name, matches) already warned about, so a name setting warns once per guild, not per command."""


def is_library_admin(interaction: discord.Interaction, admin_role: str) -> bool:
    """Manage Server (or Administrator) in this guild, or the configured role (see `admin_role_id`)."""
    permissions = interaction.permissions
    if permissions.manage_guild or permissions.administrator:
        return True
    role_id = admin_role_id(interaction.guild, admin_role)
    return role_id is not None and any(role.id == role_id for role in getattr(interaction.user, "roles", []))


def admin_role_id(guild: discord.Guild | None, admin_role: str) -> int | None:
    """The id of the configured admin role. An id is matched as it is. A name is matched only when exactly
    one role of the guild has it, with a warning: anyone with Manage Roles can create a role of any name,
    and two roles of that name trust neither."""
    wanted = admin_role.strip()
    if not wanted:
        return None
    if wanted.isdecimal():
        return int(wanted)
    named = [role.id for role in getattr(guild, "roles", []) if role.name == wanted]
    key = (getattr(guild, "id", None), wanted, len(named))
    if key not in _warned:
        _warned.add(key)
        if len(named) == 1:
            log.warning("CRATEDIGGER_ADMIN_ROLE is a role name; any member with Manage Roles can make one: "
                        "set the role's id (%d in guild %s) instead", named[0], key[0])
        else:
            log.warning("CRATEDIGGER_ADMIN_ROLE names %d roles in guild %s, so none of them is trusted: set "
                        "the role's id instead", len(named), key[0])
    return named[0] if len(named) == 1 else None


def require_library_admin(interaction: discord.Interaction, admin_role: str) -> None:
    if not is_library_admin(interaction, admin_role):
        needed = "the Manage Server permission" + (f" or the “{admin_role}” role" if admin_role else "")
        raise Refusal(f"Only library admins can do that: it needs {needed}.")


def enforce_cooldown(interaction: discord.Interaction) -> None:
    """Heavy commands (audio work) call this after their cheap checks, so a refused upload does not cost
    the user their turn: one heavy command per user every `user_cooldown_seconds`."""
    wait = interaction.client.cooldown.hit(interaction.user.id)  # type: ignore[attr-defined]
    if wait > 0:
        raise Refusal(f"One analysis at a time, please: try again in {max(1, round(wait))} s.")
