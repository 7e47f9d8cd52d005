"""From a streaming service's link to a link we can download: `core.streaming` says which track it is,
`core.trackmatch` finds the same recording; `Resolved` says what will be analysed, for every answer.

Blocking (network): call it from a worker thread.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from core.config import Settings
from core.netguard import Connector, Resolver, check_url, direct_connector, system_resolver
from core.playlist import Playlist
from core.streaming import list_tracks, parse_link, read_track
from core.trackmatch import find_recording
from core.webget import WebSession


@dataclass(frozen=True)
class Resolved:
    """A streaming service's track and where its audio was found."""

    service: str
    """The service's name ("Spotify")."""
    artist: str
    title: str
    duration: float | None
    """The track's length as the service states it (s)."""
    link: str
    """The service's link, as sent."""
    source_url: str
    """The link whose audio is analysed."""
    source: str
    """Where that is ("YouTube")."""
    found_by: str
    """"its title and length" or "its title"."""

    @property
    def label(self) -> str:
        return f"{self.artist} – {self.title}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolved_line(resolved: dict[str, Any]) -> str:
    """One line for a person, from `Resolved.to_dict()`: "analysed Artist – Title from YouTube, found by
    its title: URL" (the command line's text; the bot renders the same facts in its embeds)."""
    return (f"analysed {resolved['artist']} – {resolved['title']} from {resolved['source']}, found by "
            f"{resolved['found_by']}: {resolved['source_url']}")


def is_streaming_link(url: str) -> bool:
    return parse_link(url) is not None


def resolve_link(url: str, settings: Settings, *, resolver: Resolver = system_resolver,
                 connector: Connector = direct_connector) -> Resolved | None:
    """None for a link of no streaming service (fetch it as it is); else the track and its found audio.

    Raises `PlaylistLink` for an album or playlist, `NotFound` when no search result is the same
    recording, and the fetch errors of `core.webget` for the service's own answers."""
    link = parse_link(url)
    if link is None:
        return None
    check_url(url, settings)
    with WebSession(settings, resolver=resolver, connector=connector) as web:
        track = read_track(link, settings, web)
    found = find_recording(track, settings, resolver=resolver, connector=connector)
    return Resolved(link.service_name, track.artist, track.title, track.duration, url.strip(), found.url,
                    found.source, found.found_by)


def list_streaming(url: str, settings: Settings, *, resolver: Resolver = system_resolver,
                   connector: Connector = direct_connector) -> Playlist | None:
    """A streaming album's or playlist's tracks (links of the service), or None for another link."""
    link = parse_link(url)
    if link is None:
        return None
    check_url(url, settings)
    with WebSession(settings, resolver=resolver, connector=connector) as web:
        return list_tracks(link, settings, web)
