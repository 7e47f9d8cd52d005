"""Spotify, Apple Music, Deezer and Tidal links: what track (or tracks) they name, read without any key.

Their audio is DRM-protected and yt-dlp has no extractor for them, so a link of theirs is resolved here to
an artist, a title and (when the service states it) a length; `core.trackmatch` then finds the same
recording on a site yt-dlp downloads from. Every read goes through `core.webget` (the SSRF guard, a size
cap per answer, a content-type check, redirects re-checked, one deadline for the whole resolution). The
services' addresses are settings (`spotify_url`, `apple_music_url`, `deezer_api_url`, `deezer_share_url`,
`tidal_url`); the link a user sends only tells which service and which id.

What each service publishes without a key, and what is read from it (read 2026-12 from the sources named):

* **Spotify** — oEmbed (``https://open.spotify.com/oembed?url=…``, developer.spotify.com/documentation/
  embeds/reference/oembed) answers ``title``, ``html``, ``thumbnail_url``… but no artist and no length,
  so the track page itself is read: ``og:title`` (the track's name), ``music:musician_description`` (its
  artists, comma-separated), ``music:duration`` (seconds), ``og:description`` ("Artist · Album · Song ·
  Year") as the artist's fallback. An album or playlist page lists its tracks as ``music:song`` meta tags
  (links to track pages). A short link (``spotify.link/…``) is resolved through oEmbed, which accepts
  it (same reference): the ``src`` of the ``html`` iframe names the track, album or playlist.
* **Apple Music** — the page's JSON-LD (schema.org): a song page holds a ``MusicRecording`` (in
  ``<script id="schema:song">``, often as the ``audio`` of a ``MusicComposition``) with ``name``,
  ``byArtist`` and an ISO 8601 ``duration``; an album page a ``MusicAlbum`` whose ``tracks`` are
  ``MusicRecording``s with ``name``, ``url`` and ``duration``; a playlist page a ``MusicPlaylist`` whose
  ``track`` are the same. ``og:title`` ("Title by Artist on Apple Music") is the fallback.
* **Deezer** — the public API (developers.deezer.com/api, no key for reading the catalogue):
  ``/track/ID`` answers ``title``, ``duration`` (s) and ``artist.name``; ``/album/ID`` and ``/playlist/ID``
  answer ``title``, ``nb_tracks`` and ``tracks.data`` (each with ``id``, ``title``, ``duration``,
  ``artist.name``, ``link``). A failure is an ``{"error": {...}}`` object with HTTP 200. Share links
  (``deezer.page.link/…``) redirect to a deezer.com link; only that redirect is read (newer
  ``link.deezer.com`` links are not recognised: they are left to yt-dlp, which refuses them).
* **Tidal** — its catalogue API needs a token and its oEmbed (``oembed.tidal.com``) gives at most a
  title, so the track page is read: ``og:title`` is "Artist - Title" (split at the first " - "),
  ``music:duration`` when present. Album and playlist pages load their track lists with JavaScript, so
  they are refused with a reason.
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from core.config import Settings
from core.errors import FetchFailed, FetchRefused, PlaylistLink
from core.fetch import clean_text
from core.pagemeta import PageMeta, iso_duration, json_ld_objects, names, parse_page
from core.playlist import MAX_LISTED_ENTRIES, Playlist, PlaylistEntry
from core.webget import HTML, JSON, WebSession

SERVICES = {"spotify": "Spotify", "apple_music": "Apple Music", "deezer": "Deezer", "tidal": "Tidal"}
KINDS = ("track", "album", "playlist")

_SPOTIFY_ID = re.compile(r"^[A-Za-z0-9]{22}$")
_DIGITS = re.compile(r"^\d{1,20}$")
_APPLE_STOREFRONT = re.compile(r"^[a-z]{2}$")
_APPLE_PLAYLIST = re.compile(r"^pl\.[A-Za-z0-9.-]{1,80}$")
_DEEZER_LANG = re.compile(r"^[a-z]{2}(?:-[a-z]{2})?$")
_TIDAL_ID = re.compile(r"^(?:\d{1,20}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
_SHARE_CODE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SRC = re.compile(r"""\bsrc\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_APPLE_OG = re.compile(r"^(?P<title>.+) by (?P<artist>.+?) on Apple\xa0?\s?Music$")


Fields = tuple[Any, Any, float | None]
"""A track's artist, title (as the service spells them, cleaned later) and length in seconds."""
Listing = tuple[str | None, list[str], int | None]
"""An album's or playlist's title, its tracks' links, and how many tracks it says it has."""


@dataclass(frozen=True)
class StreamingLink:
    """A link of one of the four services, as parsed from what the user sent (no network)."""

    service: str
    """A key of `SERVICES`."""
    kind: str
    """"track", "album", "playlist", or "share" (a short link: Deezer's by its redirect, Spotify's by
    oEmbed)."""
    id: str
    url: str
    path: str = ""
    """Apple Music: the link's path (storefront, kind, slug, id), kept to build the page's address."""

    @property
    def service_name(self) -> str:
        return SERVICES[self.service]


@dataclass(frozen=True)
class ServiceTrack:
    """What the service says a track is."""

    service: str
    artist: str
    title: str
    duration: float | None
    link: str
    """The service's link, as the user sent it (or as its album listed it)."""

    @property
    def label(self) -> str:
        return f"{self.artist} – {self.title}"


def parse_link(url: str) -> StreamingLink | None:
    """The service, kind and id a link names, or None for any other link. Pure: no network."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    host = (parts.hostname or "").lower().rstrip(".")
    segs = [s for s in parts.path.split("/") if s]
    if parts.scheme.lower() not in ("http", "https"):
        return None
    if host == "open.spotify.com":
        return _spotify(url, segs)
    if host == "spotify.link" and len(segs) == 1 and _SHARE_CODE.match(segs[0]):
        return StreamingLink("spotify", "share", segs[0], url)
    if host == "music.apple.com":
        return _apple(url, segs, parse_qs(parts.query))
    if host in ("deezer.com", "www.deezer.com"):
        if segs and _DEEZER_LANG.match(segs[0]):
            segs = segs[1:]
        return _by_kind("deezer", url, segs, _DIGITS)
    if host == "deezer.page.link" and len(segs) == 1 and _SHARE_CODE.match(segs[0]):
        return StreamingLink("deezer", "share", segs[0], url)
    if host in ("tidal.com", "www.tidal.com", "listen.tidal.com"):
        if segs and segs[0] == "browse":
            segs = segs[1:]
        return _by_kind("tidal", url, segs[:2], _TIDAL_ID)
    return None


def _by_kind(service: str, url: str, segs: list[str], ident: re.Pattern[str]) -> StreamingLink | None:
    if len(segs) == 2 and segs[0] in KINDS and ident.match(segs[1]):
        return StreamingLink(service, segs[0], segs[1], url)
    return None


def _spotify(url: str, segs: list[str]) -> StreamingLink | None:
    if segs and segs[0].startswith("intl-"):
        segs = segs[1:]
    if segs and segs[0] == "embed":
        segs = segs[1:]
    return _by_kind("spotify", url, segs, _SPOTIFY_ID)


def _apple(url: str, segs: list[str], query: dict[str, list[str]]) -> StreamingLink | None:
    """``/us/song/slug/ID``, ``/us/album/slug/ID?i=TRACK`` (a track), ``/us/album/slug/ID``,
    ``/us/playlist/slug/pl.ID`` (the slug may be missing)."""
    if len(segs) not in (3, 4) or not _APPLE_STOREFRONT.match(segs[0]):
        return None
    kind, item = segs[1], segs[-1]
    path = "/" + "/".join(segs)
    track = (query.get("i") or [""])[0]
    if kind == "song" and _DIGITS.match(item):
        return StreamingLink("apple_music", "track", item, url, path)
    if kind == "album" and _DIGITS.match(item):
        if _DIGITS.match(track):
            return StreamingLink("apple_music", "track", track, url, f"{path}?i={track}")
        return StreamingLink("apple_music", "album", item, url, path)
    if kind == "playlist" and _APPLE_PLAYLIST.match(item):
        return StreamingLink("apple_music", "playlist", item, url, path)
    return None


# -- reading what a service says ------------------------------------------------------------------------

def read_track(link: StreamingLink, settings: Settings, web: WebSession) -> ServiceTrack:
    """The artist, title and length the service publishes for a track link (`FetchFailed` when it does
    not say who and what)."""
    sent = link.url
    link = _unshare(link, settings, web)
    if link.kind != "track":
        raise PlaylistLink(f"That {link.service_name} link is {'an' if link.kind == 'album' else 'a'} "
                           f"{link.kind}; send a link to a single track.")
    reader = {"spotify": _spotify_track, "apple_music": _apple_track, "deezer": _deezer_track,
              "tidal": _tidal_track}[link.service]
    artist, title, duration = reader(link, settings, web)
    artist, title = clean_text(artist), clean_text(title)
    if not artist or not title:
        raise FetchFailed(f"{link.service_name} did not say which track that link is.")
    return ServiceTrack(link.service, artist, title, duration if duration and duration > 0 else None, sent)


def list_tracks(link: StreamingLink, settings: Settings, web: WebSession, *,
                max_entries: int = MAX_LISTED_ENTRIES) -> Playlist:
    """An album's or playlist's tracks as links of the same service (each resolved when it is added);
    a track link lists as itself."""
    link = _unshare(link, settings, web)
    if link.kind == "track":
        return Playlist(None, [PlaylistEntry(link.url, None)], 1)
    if link.service == "tidal":
        raise FetchRefused("Tidal does not list an album's or a playlist's tracks without an account; "
                           "add its tracks one by one.")
    reader = {"spotify": _spotify_listing, "apple_music": _apple_listing, "deezer": _deezer_listing}
    title, urls, total = reader[link.service](link, settings, web)
    entries = [PlaylistEntry(u, None) for u in dict.fromkeys(urls)][:max_entries]
    if total is None or total < len(entries):
        total = len(entries) if len(urls) <= max_entries else None
    return Playlist(clean_text(title), entries, total)


def _unshare(link: StreamingLink, settings: Settings, web: WebSession) -> StreamingLink:
    """A short link's target, which must be a link of the same service: Deezer's is read from its
    redirect (not followed), Spotify's from its oEmbed iframe."""
    if link.kind != "share":
        return link
    if link.service == "deezer":
        target = web.redirect_target(f"{settings.deezer_share_url.rstrip('/')}/{link.id}",
                                     what="Deezer's share link")
    else:
        short = quote(f"https://spotify.link/{link.id}", safe="")
        answer = web.get(f"{settings.spotify_url.rstrip('/')}/oembed?url={short}", accept=JSON,
                         what="Spotify's oEmbed")
        target = _iframe_src(answer.text)
    resolved = parse_link(target)
    if resolved is None or resolved.service != link.service or resolved.kind == "share":
        raise FetchRefused(f"That {link.service_name} short link does not lead to a {link.service_name} "
                           "track, album or playlist.")
    return resolved


def _iframe_src(text: str) -> str:
    """The iframe's address in an oEmbed answer's ``html`` ("" when there is none)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return ""
    match = _SRC.search(str(doc.get("html") or "")) if isinstance(doc, dict) else None
    return html.unescape(match.group(1)) if match else ""


def _page(web: WebSession, url: str, what: str) -> PageMeta:
    return parse_page(web.get(url, accept=HTML, what=what).text)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < float("inf") else None


def _spotify_track(link: StreamingLink, settings: Settings, web: WebSession) -> Fields:
    page = _page(web, f"{settings.spotify_url.rstrip('/')}/track/{link.id}", "Spotify's page")
    artist = page.first("music:musician_description")
    if not artist:
        description = page.first("og:description") or ""
        artist = description.split(" · ")[0] if " · " in description else None
    return artist, page.first("og:title", "twitter:title"), _number(page.first("music:duration"))


def _spotify_listing(link: StreamingLink, settings: Settings, web: WebSession) -> Listing:
    page = _page(web, f"{settings.spotify_url.rstrip('/')}/{link.kind}/{link.id}", "Spotify's page")
    urls = []
    for song in page.all("music:song"):
        entry = parse_link(song)
        if entry is not None and entry.service == "spotify" and entry.kind == "track":
            urls.append(f"https://open.spotify.com/track/{entry.id}")
    count = _number(page.first("music:song_count"))
    return page.first("og:title"), urls, int(count) if count else None


def _apple_track(link: StreamingLink, settings: Settings, web: WebSession) -> Fields:
    page = _page(web, settings.apple_music_url.rstrip("/") + link.path, "Apple Music's page")
    recordings = list(json_ld_objects(page, "MusicRecording"))
    mine = [r for r in recordings if str(r.get("url") or "").rstrip("/").endswith(link.id)
            or f"i={link.id}" in str(r.get("url") or "")]
    album_artists = [n for a in json_ld_objects(page, "MusicAlbum") for n in names(a.get("byArtist"))]
    for recording in mine or recordings[:1]:
        artists = names(recording.get("byArtist")) or album_artists
        if recording.get("name") and artists:
            return ", ".join(artists), str(recording["name"]), iso_duration(recording.get("duration"))
    match = _APPLE_OG.match(page.first("og:title") or "")
    if match:
        return match["artist"], match["title"], _number(page.first("music:song:duration", "music:duration"))
    return None, None, None


def _apple_listing(link: StreamingLink, settings: Settings, web: WebSession) -> Listing:
    page = _page(web, settings.apple_music_url.rstrip("/") + link.path, "Apple Music's page")
    for group in json_ld_objects(page, "MusicAlbum", "MusicPlaylist"):
        tracks = group.get("tracks") or group.get("track") or []
        urls = [str(t["url"]) for t in tracks if isinstance(t, dict) and isinstance(t.get("url"), str)
                and (entry := parse_link(t["url"])) is not None and entry.service == "apple_music"
                and entry.kind == "track"]
        return clean_text(group.get("name")), urls, len(urls)
    raise FetchFailed("Apple Music's page did not list that album's or playlist's tracks.")


def _deezer_api(web: WebSession, settings: Settings, path: str) -> dict[str, Any]:
    answer = web.get(f"{settings.deezer_api_url.rstrip('/')}/{path}", accept=JSON, what="Deezer's API")
    try:
        doc = json.loads(answer.text)
    except ValueError:
        raise FetchFailed("Deezer's API answered with something that is not JSON.") from None
    if not isinstance(doc, dict):
        raise FetchFailed("Deezer's API answered with something unexpected.")
    if isinstance(doc.get("error"), dict):
        reason = clean_text(doc["error"].get("message")) or "an error"
        raise FetchFailed(f"Deezer does not know that link ({reason[:60]}).")
    return doc


def _deezer_track(link: StreamingLink, settings: Settings, web: WebSession) -> Fields:
    doc = _deezer_api(web, settings, f"track/{link.id}")
    artist = doc.get("artist")
    return (names(artist)[0] if names(artist) else None), doc.get("title"), _number(doc.get("duration"))


def _deezer_listing(link: StreamingLink, settings: Settings, web: WebSession) -> Listing:
    doc = _deezer_api(web, settings, f"{link.kind}/{link.id}")
    tracks = (doc.get("tracks") or {}).get("data") if isinstance(doc.get("tracks"), dict) else None
    urls = [f"https://www.deezer.com/track/{int(t['id'])}" for t in tracks or []
            if isinstance(t, dict) and isinstance(t.get("id"), int)]
    total = doc.get("nb_tracks")
    return clean_text(doc.get("title")), urls, total if isinstance(total, int) else None


def _tidal_track(link: StreamingLink, settings: Settings, web: WebSession) -> Fields:
    page = _page(web, f"{settings.tidal_url.rstrip('/')}/browse/track/{link.id}", "Tidal's page")
    artist, sep, title = (page.first("og:title") or "").partition(" - ")
    if not sep:
        return None, None, None
    return artist, title, _number(page.first("music:duration"))
