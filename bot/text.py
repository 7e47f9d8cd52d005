"""Making strings from users and from file metadata safe to show: one line, capped, no pings, no markdown.

Titles, tags and file names are attacker-controlled on a public server. Besides `AllowedMentions.none()`
on every message (so nothing pings even if text slipped through), replies neutralise mention syntax and
markdown so `@everyone`, `<@&role>`, `[masked](links)` and `# headers` render as the plain text they are.
"""
from __future__ import annotations

import re

import discord

_WHITESPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def one_line(text: object, limit: int) -> str:
    """Whitespace collapsed, control and bidi characters removed, at most `limit` characters."""
    flat = _WHITESPACE.sub(" ", _CONTROL.sub("", str(text))).strip()
    return flat if len(flat) <= limit else flat[: max(0, limit - 1)].rstrip() + "…"


def safe(text: object, limit: int = 100) -> str:
    """`one_line`, then mentions and markdown escaped: for titles, tags, file names and reasons.

    The cap applies before escaping; escaping at most doubles the length, so callers size `limit` for
    Discord's field limits with that in mind."""
    return discord.utils.escape_markdown(discord.utils.escape_mentions(one_line(text, limit)))


def code(text: object, limit: int = 100) -> str:
    """`one_line` as an inline code span: markdown and mentions do not render inside one, and a backtick,
    which would end the span early (a backslash does not escape it there), becomes a look-alike (ˋ)."""
    return "`" + (one_line(text, limit).replace("`", "\u02cb") or " ") + "`"


def choice_name(text: object) -> str:
    """Autocomplete and select-option labels are shown as plain text (no markdown, no pings) and must be
    1-100 characters."""
    return one_line(text, 100) or "(untitled)"


def percent(p: float) -> str:
    return f"{100 * p:.0f} %"
