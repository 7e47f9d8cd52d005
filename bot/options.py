"""Option values checked against what each command declared, before any command runs.

Discord's own client only sends values of the declared type, one of the declared choices, within the
declared range, and discord.py passes whatever arrives straight to the callback. A modified client can get
other values relayed (a `count` of "", a `link` of `false`, a mood that is not offered), so the bot checks
them once here, for every command, instead of trusting them in each cog.
"""
from __future__ import annotations

from typing import Any

import discord
from discord import app_commands


_KINDS: dict[discord.AppCommandOptionType, tuple[tuple[type, ...], str]] = {
    discord.AppCommandOptionType.string: ((str,), "text"),
    discord.AppCommandOptionType.integer: ((int,), "a whole number"),
    discord.AppCommandOptionType.number: ((int, float), "a number"),
    discord.AppCommandOptionType.boolean: ((bool,), "true or false"),
}
"""The Python types discord.py hands over for each option type, and how to name that type to a user."""


def leaf_options(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The options of the invoked (sub-)command, below any sub-command groups (as discord.py finds them)."""
    options = data.get("options") or []
    while options and options[0].get("type") in (1, 2):
        options = options[0].get("options") or []
    return options


def option_problem(command: app_commands.Command[Any, ..., Any], options: list[dict[str, Any]]) -> str | None:
    """Why these raw options do not fit `command`, as one line for the user; None when they all fit.

    Options the command does not declare are ignored (discord.py never passes them on); a focused option
    (the text being typed into an autocomplete) is the autocomplete handler's to judge."""
    parameters = {p.display_name: p for p in command.parameters}
    for option in options:
        parameter = parameters.get(option.get("name"))  # type: ignore[arg-type]
        if parameter is None or option.get("focused"):
            continue
        problem = _value_problem(parameter, option.get("value"))
        if problem is not None:
            return f"I can't use that {parameter.display_name}: {problem}."
    return None


def _value_problem(parameter: app_commands.Parameter, value: Any) -> str | None:
    if parameter.type not in _KINDS:  # users, channels, attachments…: resolved from Discord's own data
        return None
    expected, what = _KINDS[parameter.type]
    if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
        return f"it must be {what}"
    if parameter.choices and value not in [choice.value for choice in parameter.choices]:
        return "pick one of " + ", ".join(choice.name for choice in parameter.choices)
    low, high = parameter.min_value, parameter.max_value
    size = len(value) if isinstance(value, str) else value
    if (low is None or size >= low) and (high is None or size <= high):
        return None
    unit = " characters" if isinstance(value, str) else ""
    if low is not None and high is not None:
        return f"it must be from {low} to {high}{unit}"
    return f"it must be at least {low}{unit}" if low is not None else f"it must be at most {high}{unit}"

