"""Find a streaming service's track on a site yt-dlp downloads from, or say it cannot be found.

The search is a setting (`Settings.track_search`): a yt-dlp search such as the default
``ytsearch5:{artist} {title}`` or an http(s) URL template whose page yt-dlp reads as a list (the values are
URL-encoded there). It runs through `core.fetch.guarded_extract` (the guard proxy, flat: no result is
downloaded to list it). Of the first `MAX_CANDIDATES` results, the first one that is the same recording is
kept (`same_recording`): every word of the title and of the main artist found in the result's title or
channel (after normalising case, accents and punctuation, a word matching at `WORD_SIMILARITY`), none of the
words that mark another version (live, cover, remix...) unless the service's title has them too, and a
length within `DURATION_TOLERANCE_SECONDS` of the service's when both state one. Nothing kept means
`NotFound`: a wrong song analysed under the right name would be worse than a refusal.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any
from urllib.parse import quote, urlsplit

from core.config import Settings
from core.errors import FetchFailed
from core.fetch import EXTRACTION_ALLOWANCE_BYTES, PLAYLIST_TYPES, clean_text, guarded_extract, is_link
from core.netguard import Connector, Resolver, check_url, direct_connector, system_resolver
from core.playlist import flat_entry
from core.streaming import ServiceTrack

MAX_CANDIDATES = 5
DURATION_TOLERANCE_SECONDS = 5.0
WORD_SIMILARITY = 0.85
"""Two words of four letters or more are the same word at this `difflib` ratio (a typo, a dropped letter)."""
OTHER_VERSIONS = frozenset({"live", "cover", "karaoke", "remix", "instrumental", "acoustic", "nightcore",
                            "slowed", "reverb", "sped", "8d", "tribute", "reaction", "lesson", "tutorial"})
"""Words in a result's title that mark another recording than the one the service names."""
SOURCE_NAMES = {"youtube": "YouTube", "soundcloud": "SoundCloud", "bandcamp": "Bandcamp",
                "vimeo": "Vimeo", "mixcloud": "Mixcloud", "audiomack": "Audiomack",
                "dailymotion": "Dailymotion"}
_FEATURING = re.compile(r"[(\[]\s*(?:feat|ft|with)\b[^)\]]*[)\]]", re.IGNORECASE)
_VERSION_SUFFIX = re.compile(r"\s+-\s+(?:\d{4}\s+)?(?:remaster(?:ed)?|single version|radio edit|mono|stereo)"
                             r"\b.*$", re.IGNORECASE)
_ARTIST_SPLIT = re.compile(r"\s*(?:,|&|\bfeat\.?|\bft\.?|\bx\b|\band\b)\s*", re.IGNORECASE)


class NotFound(FetchFailed):
    """No result of the search is the same recording."""


@dataclass(frozen=True)
class Candidate:
    url: str
    title: str
    channel: str
    duration: float | None
    extractor: str


@dataclass(frozen=True)
class Found:
    url: str
    title: str
    source: str
    """The site's name ("YouTube"), or its host when it has no known name."""
    found_by: str
    """"its title and length" or "its title" (when the result or the service states no length)."""


def words(text: str) -> list[str]:
    """Lower-case words without accents or punctuation ("Beyoncé & JAY-Z" -> beyonce, and, jay, z)."""
    text = unicodedata.normalize("NFKD", text.replace("&", " and "))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return re.findall(r"[^\W_]+", text)


def _has(word: str, pool: list[str]) -> bool:
    if word in pool:
        return True
    return len(word) >= 4 and any(len(w) >= 4 and SequenceMatcher(None, word, w).ratio() >= WORD_SIMILARITY
                                  for w in pool)


def core_title(title: str) -> str:
    """The title without "(feat. X)" and "- 2011 Remaster" kinds of suffix, which results rarely repeat."""
    return _VERSION_SUFFIX.sub("", _FEATURING.sub("", title)).strip() or title


def main_artist(artist: str) -> str:
    return next((a for a in _ARTIST_SPLIT.split(artist) if a.strip()), artist)


def same_recording(track: ServiceTrack, candidate: Candidate) -> tuple[bool, bool]:
    """(is it the same recording, was its length compared)."""
    pool = words(f"{candidate.title} {candidate.channel}")
    wanted = words(core_title(track.title)) + words(main_artist(track.artist))
    if not wanted or not all(_has(w, pool) for w in wanted):
        return False, False
    others = OTHER_VERSIONS - set(words(track.title))
    if others & set(words(candidate.title)):
        return False, False
    if track.duration is None or candidate.duration is None:
        return True, False
    return abs(track.duration - candidate.duration) <= DURATION_TOLERANCE_SECONDS, True


def search_query(template: str, artist: str, title: str) -> str:
    """The template with {artist} and {title} filled in (URL-encoded when the template is a link)."""
    encode = (lambda v: quote(v, safe="")) if is_link(template) else (lambda v: " ".join(v.split()))
    return template.replace("{artist}", encode(artist)).replace("{title}", encode(title))


def find_recording(track: ServiceTrack, settings: Settings, *, resolver: Resolver = system_resolver,
                   connector: Connector = direct_connector) -> Found:
    """The first search result that is the same recording; `NotFound` when none is."""
    query = search_query(settings.track_search, track.artist, core_title(track.title))
    if is_link(query):
        check_url(query, settings)
    options = {"extract_flat": "in_playlist", "noplaylist": False, "lazy_playlist": True,
               "skip_download": True, "playlistend": MAX_CANDIDATES}
    info, _stats = guarded_extract(query, settings, options, download=False,
                                   byte_budget=EXTRACTION_ALLOWANCE_BYTES, resolver=resolver,
                                   connector=connector)
    for candidate in candidates(info)[:MAX_CANDIDATES]:
        same, timed = same_recording(track, candidate)
        if same:
            return Found(candidate.url, candidate.title, source_name(candidate),
                         "its title and length" if timed else "its title")
    raise NotFound(f"I could not find {track.label} anywhere I can listen to.")


def candidates(info: Any) -> list[Candidate]:
    """The results of a flat search (or a single result), in the search's order."""
    if not isinstance(info, dict):
        return []
    entries = info.get("entries") if info.get("_type") in PLAYLIST_TYPES else [info]
    base = str(info.get("webpage_url") or "")
    out = []
    for entry in entries or []:
        listed = flat_entry(entry, base)
        if listed is None or not listed.url.startswith(("http://", "https://")):
            continue
        duration = entry.get("duration")
        out.append(Candidate(
            url=listed.url, title=clean_text(entry.get("title")) or "",
            channel=clean_text(entry.get("channel") or entry.get("uploader") or entry.get("artist")) or "",
            duration=float(duration) if isinstance(duration, (int, float)) and duration > 0 else None,
            extractor=str(entry.get("ie_key") or entry.get("extractor_key") or "").lower()))
    return out


def source_name(candidate: Candidate) -> str:
    for key, name in SOURCE_NAMES.items():
        if candidate.extractor.startswith(key):
            return name
    return urlsplit(candidate.url).netloc or "the web"
