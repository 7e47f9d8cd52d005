"""The entries of a playlist link, listed without downloading any of them, behind the same guard as a fetch.

A playlist here is whatever yt-dlp extracts as one: an RSS feed whose items carry audio enclosures (a
podcast), a page holding several audio elements, a site's own playlist. yt-dlp's flat extraction
(``extract_flat="in_playlist"``) stops at each entry's address; nothing behind an entry is requested, so a
feed cannot make us fetch its hundred files just to list them. Each entry is then fetched on its own by
`core.fetch.fetch_audio`, which pre-checks the address and sends every connection through a new guard
proxy: an entry pointing at a private address is refused alone while the other entries still go in.

It blocks (network): call it from a worker thread, never on the event loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from core.config import Settings
from core.errors import FetchFailed
from core.fetch import EXTRACTION_ALLOWANCE_BYTES, PLAYLIST_TYPES, clean_text, guarded_extract
from core.netguard import Connector, Resolver, check_url, direct_connector, system_resolver

MAX_LISTED_ENTRIES = 500
"""Entries read from one playlist at most: listing is cheap (no downloads), and reading past the ones
already in the library is what lets a second add of the same link continue where the first stopped."""


@dataclass(frozen=True)
class PlaylistEntry:
    url: str
    """Absolute address of the entry, as a single-track link (yt-dlp's smuggled hints removed)."""
    title: str | None
    """What the playlist calls it (an RSS item's title), when it says."""


@dataclass(frozen=True)
class Playlist:
    title: str | None
    entries: list[PlaylistEntry]
    """In playlist order, at most `MAX_LISTED_ENTRIES`."""
    total: int | None
    """How many entries the playlist has; None when it has more than were listed and yt-dlp cannot say
    how many."""


def list_playlist(url: str, settings: Settings, *, max_entries: int = MAX_LISTED_ENTRIES,
                  resolver: Resolver = system_resolver, connector: Connector = direct_connector) -> Playlist:
    """List `url`'s entries (flat). Raises `FetchRefused` or `FetchFailed` with a one-line reason.

    A link that turns out to be a single track is listed as a playlist of itself."""
    check_url(url, settings)
    url = url.strip()
    options = {"extract_flat": "in_playlist", "noplaylist": False, "lazy_playlist": False,
               "skip_download": True, "playlistend": max_entries + 1}  # one more: are there more?
    info, _stats = guarded_extract(url, settings, options, download=False,
                                   byte_budget=EXTRACTION_ALLOWANCE_BYTES, resolver=resolver,
                                   connector=connector)
    if not isinstance(info, dict):
        raise FetchFailed("Could not read that playlist.")
    if info.get("_type") not in PLAYLIST_TYPES:
        return Playlist(clean_text(info.get("title")), [PlaylistEntry(url, clean_text(info.get("title")))], 1)
    base = str(info.get("webpage_url") or url)
    entries = [entry for entry in (flat_entry(raw, base) for raw in info.get("entries") or []) if entry]
    total = info.get("playlist_count")
    listed = entries[:max_entries]
    if not isinstance(total, int) or total < len(listed):
        total = len(listed) if len(entries) <= max_entries else None
    return Playlist(clean_text(info.get("title")), listed, total)


def flat_entry(raw: Any, base: str) -> PlaylistEntry | None:
    """A flat entry's own link (relative ones resolved against the playlist's address); for an entry yt-dlp
    resolved already (a page's audio element), the media file's address."""
    from yt_dlp.utils import unsmuggle_url

    if not isinstance(raw, dict) or not isinstance(raw.get("url"), str) or not raw["url"].strip():
        return None
    link, _hints = unsmuggle_url(raw["url"].strip())
    return PlaylistEntry(urljoin(base, link), clean_text(raw.get("title")))
