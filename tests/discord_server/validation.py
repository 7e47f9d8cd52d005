"""The message limits Discord enforces with `400 Invalid Form Body`, so a bot that would be refused by the
real API is refused here too (content, embeds, components, autocomplete choices)."""
from __future__ import annotations

from typing import Any

from tests.discord_server.records import iter_components


def message_problems(data: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    content = data.get("content") or ""
    if len(content) > 2000:
        problems.append(f"content is {len(content)} characters (max 2000)")
    embeds = data.get("embeds") or []
    if len(embeds) > 10:
        problems.append(f"{len(embeds)} embeds (max 10)")
    total = 0
    for i, embed in enumerate(embeds):
        for key, cap in (("title", 256), ("description", 4096)):
            size = len(embed.get(key) or "")
            total += size
            if size > cap:
                problems.append(f"embeds[{i}].{key} is {size} characters (max {cap})")
        fields = embed.get("fields") or []
        if len(fields) > 25:
            problems.append(f"embeds[{i}] has {len(fields)} fields (max 25)")
        for j, f in enumerate(fields):
            name, value = f.get("name") or "", f.get("value") or ""
            total += len(name) + len(value)
            if not name or not value:
                problems.append(f"embeds[{i}].fields[{j}] has an empty name or value")
            if len(name) > 256 or len(value) > 1024:
                problems.append(f"embeds[{i}].fields[{j}] too long")
        footer = (embed.get("footer") or {}).get("text") or ""
        total += len(footer)
        if len(footer) > 2048:
            problems.append(f"embeds[{i}].footer is too long")
    if total > 6000:
        problems.append(f"embeds total {total} characters (max 6000)")
    problems += component_problems(data.get("components") or [])
    return problems


def component_problems(rows: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    if len(rows) > 5:
        problems.append(f"{len(rows)} action rows (max 5)")
    for c in iter_components(rows):
        custom_id = c.get("custom_id")
        if custom_id is not None and not 1 <= len(custom_id) <= 100:
            problems.append(f"custom_id {custom_id!r} must be 1-100 characters")
        if len(c.get("label") or "") > 80:
            problems.append(f"label {c['label']!r} is longer than 80 characters")
        options = c.get("options")
        if options is not None:
            if not 1 <= len(options) <= 25:
                problems.append(f"select {custom_id!r} has {len(options)} options (1-25)")
            for o in options:
                if not 1 <= len(o.get("label") or "") <= 100 or not 1 <= len(o.get("value") or "") <= 100:
                    problems.append(f"select option {o!r} label/value must be 1-100 characters")
    return problems


def choice_problems(choices: list[dict[str, Any]]) -> list[str]:
    problems = [] if len(choices) <= 25 else [f"{len(choices)} choices (max 25)"]
    for c in choices:
        if not 1 <= len(str(c.get("name", ""))) <= 100:
            problems.append(f"choice name {c.get('name')!r} must be 1-100 characters")
    return problems
