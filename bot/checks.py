"""Server-side checks: who may administer the library, and the heavy-work cooldown.

`default_member_permissions` only hides commands in Discord's UI (server admins can override it), so the
permission that matters is checked here, on every call."""
from __future__ import annotations

import discord

from bot.errors import Refusal


def is_library_admin(interaction: discord.Interaction, admin_role: str) -> bool:
    """Manage Server (or Administrator) in this guild, or the configured role (by name or id)."""
    permissions = interaction.permissions
    if permissions.manage_guild or permissions.administrator:
        return True
    roles = getattr(interaction.user, "roles", [])
    return bool(admin_role) and any(admin_role in (role.name, str(role.id)) for role in roles)


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
