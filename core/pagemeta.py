"""What a web page says about itself: its meta tags (Open Graph, ``music:*``), its <title> and its JSON-LD.

Pure functions over the page's text (the standard library's forgiving HTML parser: a page that is not
well-formed still yields what it holds); `core.streaming` picks a track's artist, title and length from
them. Values are returned as the page spells them; callers clean them (`core.fetch.clean_text`).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

MAX_JSON_LD_CHARS = 2 * 1024 * 1024
_ISO_DURATION = re.compile(r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?"
                           r"(?:(\d+(?:\.\d+)?)S)?)?$", re.IGNORECASE)


@dataclass
class PageMeta:
    meta: dict[str, list[str]] = field(default_factory=dict)
    """Every ``<meta property|name=... content=...>``, by lower-cased key, in page order."""
    title: str = ""
    json_ld: list[Any] = field(default_factory=list)
    """The parsed contents of each ``<script type="application/ld+json">`` that parses."""

    def first(self, *keys: str) -> str | None:
        """The first non-empty value of the first key present."""
        for key in keys:
            for value in self.meta.get(key, []):
                if value.strip():
                    return value.strip()
        return None

    def all(self, key: str) -> list[str]:
        return [v.strip() for v in self.meta.get(key, []) if v.strip()]


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = PageMeta()
        self._in_title = False
        self._script: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): v or "" for k, v in attrs}
        if tag == "meta":
            key = (values.get("property") or values.get("name") or values.get("itemprop") or "").lower()
            if key and "content" in values:
                self.page.meta.setdefault(key, []).append(values["content"])
        elif tag == "title":
            self._in_title = True
        elif tag == "script" and values.get("type", "").lower() == "application/ld+json":
            self._script = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "script" and self._script is not None:
            text = "".join(self._script)
            self._script = None
            if len(text) <= MAX_JSON_LD_CHARS:
                try:
                    self.page.json_ld.append(json.loads(text))
                except ValueError:
                    pass

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script.append(data)
        elif self._in_title:
            self.page.title += data


def parse_page(html: str) -> PageMeta:
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return parser.page


def json_ld_objects(page: PageMeta, *types: str) -> Iterator[dict[str, Any]]:
    """Every JSON-LD object (at any depth, ``@graph`` included) whose ``@type`` is one of `types`."""
    stack: list[Any] = list(reversed(page.json_ld))
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            kind = item.get("@type")
            kinds = kind if isinstance(kind, list) else [kind]
            if any(k in types for k in kinds):
                yield item
            stack.extend(reversed([v for v in item.values() if isinstance(v, (dict, list))]))


def names(value: Any) -> list[str]:
    """The ``name`` of a JSON-LD person/group, or of each in a list; a plain string counts as a name."""
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, dict):
        return names(value.get("name"))
    if isinstance(value, list):
        return [n for v in value for n in names(v)]
    return []


def iso_duration(value: Any) -> float | None:
    """Seconds in an ISO 8601 duration ("PT3M20S", "P0D", "PT1H2M3.5S"), None when it is not one."""
    if not isinstance(value, str):
        return None
    match = _ISO_DURATION.match(value.strip())
    if match is None or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = days * 86400 + hours * 3600 + minutes * 60 + seconds
    return total or None
