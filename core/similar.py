"""What a /similar answer says about each track: whether it is the query's own recording, how alike it is
(in words that scale with the score), and what the two share that the rest of the library does not.

Pure functions over what the service loaded (core.segment_match's matches, the tracks' stored outputs).
The query's own recording is found by the audio fingerprint (core.fingerprint) of every track that has one;
the embedding rule (SAME_RECORDING, SAME_BEST, SAME_CONTRAST) decides only for tracks analysed before
fingerprints were kept. Thresholds are chosen with benchmarks/bench_fingerprint.py and
benchmarks/bench_neighbours.py on both dev libraries (the shared library and the Debian soundtracks of
benchmarks/fetch_devlib.py); models/similarity.md gives the figures.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.fingerprint import FingerprintMatch, evidence, is_current, within
from core.fingerprint import match as match_landmarks
from core.frontend import TAG_COUNT
from core.recommend import ESTIMATE_SAYS, TrackInfo
from core.segment_match import SegmentMatch

TAG_NAMES: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul",
    "indie rock", "mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies",
    "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist", "guitar", "hip-hop", "70s",
    "party", "country", "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal",
    "progressive rock", "60s", "rnb", "indie pop", "sad", "house", "happy",
)
"""The front-end's 50 Million Song Dataset tags, in the order of its `tags` output (musicnn's FAQ)."""
assert len(TAG_NAMES) == TAG_COUNT

SAME_RECORDING = 0.965
"""For a track without a fingerprint: averaged max-sim from which a match may be called the query's own
recording... (the lowest pair of
thresholds that no excerpt reaches against any other track of either dev library, with 0.01 to spare:
ufoai's cues share whole passages, e.g. IntroSad and ufo1 at 0.954 / 0.982)"""
SAME_BEST = 0.986
"""...when its best single segment match reaches this too. Neither alone is safe: a different cue of one
soundtrack can match on average almost as well as an excerpt of the track itself, and two tracks that share
a section (or silence) match one segment perfectly."""

SAME_CONTRAST = 0.01
"""...and when its best match stands out from its average by this much: an excerpt matches the sections it
contains better than the rest, while audio that does not change (a held tone, silence) matches every
window alike and cannot be told from another recording of the same sound (a 445-Hz tone against a 440-Hz
one: averaged 0.982, best 0.983)."""

SAME_LANDMARKS = 25
"""Landmarks (core.fingerprint) agreeing on one time offset from which a track may be called the query's
own recording...; on the shared library, a whole copy of one track reaches up to 24 on an unrelated one.
Was 20 until a 10-s excerpt of drascula's track1 (a 192 kb/s mp3) agreed with a repeat of the same phrase
6 s later in track30, the other render, on 20 landmarks over one section with levels that matched (0.5 dB)
and passed every other condition (v2's rule too). Raised after that check on the Debian library, so only
ffmpeg 7's Debian queries checked 25 blind (no false call). It costs 1.3-2.5 % of the 10-s excerpts
recognised (shared 555 instead of 563 of 612 queries, Debian 644 instead of 664 of 810, ffmpeg 9's nine
settings) and 5 of 810 Debian middle 30 s (models/similarity.md)."""
SAME_AGREEMENT = 0.6
"""...when they also agree on at least this share of the track's sections the query covers (and on one at
least): cues of one soundtrack that share a passage note for note (supertux2's theme and christmas_theme,
4 of 24 sections; call_of_the_winding_path and shallow-green, 1 of 2) agree only there, a copy or an
excerpt nearly everywhere (23 or 24 of 24; the lowest excerpts 2 of 3). Chosen on the shared library with
benchmarks/bench_fingerprint.py; models/similarity.md gives both libraries' figures."""
SAME_DENSITY = 0.048
"""...and when at least this share of the track's landmarks in the sections the query covers agree (the
evidence's density)..."""
SAME_LONG_SECTIONS = 4
SAME_LONG_DENSITY = 0.075
"""...and at least SAME_LONG_DENSITY when the query covers SAME_LONG_SECTIONS sections or more. Why two
floors: a short query (a 10-s or 30-s excerpt, 1-3 sections) loses agreeing landmarks at its two ends and
where its frames fall between the track's, so a true excerpt agrees on as little as 0.055 of them; a query
that spans many sections is mostly interior, and a true copy or long excerpt agrees on 0.087 or more. The
same piece rendered twice (drascula's track1 and track30) agrees on 0.044-0.056 over a whole copy, made by
any of twelve encoder settings (ffmpeg 9 and 7 each: mp3 64/192, Opus 48/96, Vorbis q3, AAC 128): under
the short floor it sat a hair below 0.048 for one encoder and above it for others. Chosen on the shared
library with ffmpeg 9's encoders (its lowest long density 0.087 times 0.85, rounded), checked on ffmpeg 7's
and on the Debian library (models/similarity.md)."""
SAME_LEVEL_SPREAD = 1.4
"""...and their anchor peaks' levels stray from the track's by at most this many dB (median absolute
deviation, after the one gain the query and the track differ by). The same piece rendered twice shares
landmarks yet moves their levels: drascula's middle-30-s excerpts of one against the other stray by
1.5-1.875 dB over the twelve encoder settings (the short queries' only guard, and a thin one: the median
moves in 0.125-dB steps, and 1.375 would pass), while a copy or excerpt keeps its levels within its codec's and its frames'
error (the shared library's largest, 1.25 dB, times 1.1)."""
SAME_SLACK_SECONDS = 1.0
"""...and when the query, placed where its landmarks agree, lies within the track give or take this much (a
copy's encoder delay and a different silence trim move it by a fraction of a second): an excerpt or a copy
does, a cue that shares only the other's intro hangs off its start. Added when 16 sections a track (instead
of 24) left one section of shallow-green's intro for call_of_the_winding_path's middle 30 s to agree on."""

STRONG = 0.89
CLEAR = 0.84
WEAK = 0.73
"""Averaged max-sim from which a match is called strongly, clearly or weakly alike; below WEAK a track is
only "the nearest this library has". The 99th, 95th and 80th percentiles of the scores of an excerpt
against tracks other than its own, over both dev libraries at 24 segments (models/similarity.md)."""

SHARED_TAG_Z = 1.0
"""A tag is named as shared when both tracks score it this many library standard deviations above the
library's mean: what they have in common that the others do not."""
SHARED_TAG_MIN = 0.1
"""...and both score it at least this probability (a tag nothing here fires on says nothing)."""
MAX_TAGS = 2


@dataclass(frozen=True)
class QueryProfile:
    """The query as reasons need it: its title, mean tag probabilities, segment starts, moods and genre."""

    title: str | None
    tags: np.ndarray | None
    starts: np.ndarray | None
    moods: Mapping[str, float]
    genre: str | None

    @classmethod
    def of(cls, analysis: Any, *, title: str | None) -> QueryProfile:
        """From a core.analysis.ClipAnalysis."""
        tags = analysis.segment_tags
        return cls(title=title, tags=None if tags is None else np.asarray(tags, np.float64).mean(axis=0),
                   starts=analysis.segment_starts, moods=dict(analysis.mood_scores or {}), genre=analysis.genre)


@dataclass(frozen=True)
class Explained:
    track_id: int
    title: str
    score: float
    reason: str
    same_recording: bool


def strength(score: float) -> str | None:
    """"strongly", "clearly", "weakly" alike, or None below WEAK."""
    return ("strongly" if score >= STRONG else "clearly" if score >= CLEAR
            else "weakly" if score >= WEAK else None)


def is_same_recording(match: SegmentMatch) -> bool:
    """The embedding rule, for a track that has no fingerprint yet."""
    return match.score >= SAME_RECORDING and match.best >= SAME_BEST and match.best - match.score >= SAME_CONTRAST


def same_by_fingerprint(query: np.ndarray, landmarks: np.ndarray, starts: np.ndarray | None,
                        duration: float | None, track_id: int = 0) -> FingerprintMatch | None:
    """The match when the query's landmarks say it is this track's recording (a track's `landmarks` over
    its sections starting at `starts`, `duration` seconds long as analysed), else None."""
    found = match_landmarks(query, landmarks, track_id)
    if found.count < SAME_LANDMARKS or starts is None or duration is None:
        return None
    if not within(query, found, duration, slack=SAME_SLACK_SECONDS):
        return None
    seen = evidence(query, landmarks, found, starts)
    if not 0 < seen.agreeing >= SAME_AGREEMENT * seen.covered:
        return None
    floor = SAME_LONG_DENSITY if seen.covered >= SAME_LONG_SECTIONS else SAME_DENSITY
    return found if seen.density >= floor and seen.level_spread <= SAME_LEVEL_SPREAD else None


def stored_fingerprint(row: Any) -> np.ndarray | None:
    """A track's stored fingerprint (core.store.TrackRow), or None when it has none of today's recipe:
    a library analysed before a change of recipe keeps its old fingerprints until its next reindex, and
    those are never compared with a query's (the embedding rule decides for them meanwhile)."""
    return row.fingerprint if row.fingerprint is not None and is_current(row.analysis_version) else None


def recognised(query: np.ndarray | None, rows: Sequence[Any]) -> dict[int, FingerprintMatch]:
    """The tracks among `rows` (core.store.TrackRows) the query is a copy or an excerpt of, by their
    fingerprints (`same_by_fingerprint`). The service passes the index's candidate tracks (those with
    a segment among each query segment's nearest), so the cost does not grow with the library: about
    0.1 to 0.5 ms a track."""
    if query is None or len(query) == 0:
        return {}
    found = {}
    for row in rows:
        landmarks = stored_fingerprint(row)
        if landmarks is not None:
            m = same_by_fingerprint(query, landmarks, row.segment_starts, row.duration, row.id)
            if m is not None:
                found[row.id] = m
    return found


def recording_in(query: np.ndarray | None, rows: Sequence[Any]) -> Any | None:
    """The row among `rows` (core.store.TrackRows) whose track is the recording `query` is a copy of, the
    one with the most agreeing landmarks, or None. For a track being added, `query` is its fingerprint over
    its own analysed sections: bench_fingerprint's copy-as-track, where the rule finds 62/68 (shared
    library) and 142/150 (Debian soundtracks) re-encoded copies of a library track and calls no other
    track the same."""
    found = recognised(query, rows)
    if not found:
        return None
    best = max(found, key=lambda t: (found[t].count, -t))
    return next(r for r in rows if r.id == best)


def clock(seconds: float) -> str:
    """m:ss, floored (a section starting at 59.6 s starts in minute 0)."""
    whole = int(max(0.0, seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def tag_profile(tables: Iterable[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and spread over the library's tracks of their mean tag probabilities (None without tags), from
    each track's (segments, 50) tag probabilities (None for a track without them)."""
    means = [np.asarray(t, np.float64).mean(axis=0) for t in tables if t is not None]
    if len(means) < 2:
        return None
    table = np.stack(means)
    return table.mean(axis=0), np.maximum(table.std(axis=0), 1e-3)


def shared_tags(a: np.ndarray, b: np.ndarray, library: tuple[np.ndarray, np.ndarray]) -> list[str]:
    """Up to MAX_TAGS tags both `a` and `b` (mean tag probabilities) score well above the library's mean,
    the most distinctive first."""
    mean, std = library
    z = np.minimum(a - mean, b - mean) / std
    strong = np.minimum(a, b) >= SHARED_TAG_MIN
    order = [i for i in np.argsort(-z) if z[i] >= SHARED_TAG_Z and strong[i]]
    return [TAG_NAMES[i] for i in order[:MAX_TAGS]]


def _reason(match: SegmentMatch, row: Any, info: TrackInfo | None, query: QueryProfile,
            library: tuple[np.ndarray, np.ndarray] | None, same: bool) -> str:
    if same:
        parts = [f"this is {row.title}, already in the library"]
    else:
        level = strength(match.score)
        parts = [f"{level} alike" if level else "the nearest this library has, though not much alike"]
    starts = row.segment_starts
    if (not same and query.starts is not None and starts is not None and match.entry_pos < len(starts)
            and match.query_pos < len(query.starts)):
        parts.append(f"its {clock(starts[match.entry_pos])} sounds like {clock(query.starts[match.query_pos])} "
                     "of yours")
    if library is not None and query.tags is not None and row.segment_tags is not None:
        tags = shared_tags(query.tags, np.asarray(row.segment_tags, np.float64).mean(axis=0), library)
        if tags:
            parts.append("both " + " and ".join(tags))
    if info is not None and query.moods:
        top = max(query.moods, key=lambda m: query.moods[m])
        if query.moods[top] >= ESTIMATE_SAYS and info.moods.get(top, 0.0) >= ESTIMATE_SAYS:
            parts.append(f"both sound {top}")
    if info is not None and query.genre and info.genre == query.genre:
        parts.append(f"both {query.genre}")
    return "; ".join(parts)


def is_own_recording(match: SegmentMatch, row: Any, fingerprinted: Mapping[int, FingerprintMatch]) -> bool:
    """Whether the matched track is the query's own recording: its fingerprint matched (`recognised`), or,
    for a track without one yet, the embedding rule says so."""
    return match.track_id in fingerprinted or (stored_fingerprint(row) is None and is_same_recording(match))


def explain_matches(matches: Sequence[SegmentMatch], tracks: Mapping[int, TrackInfo], query: QueryProfile,
                    rows: Sequence[Any], *, library: tuple[np.ndarray, np.ndarray] | None,
                    same_file: int | None = None,
                    fingerprinted: Mapping[int, FingerprintMatch] | None = None) -> list[Explained]:
    """Matches (best first) -> answers with reasons, the query's own recording first.

    `rows` are the matched tracks' ready core.store.TrackRows (titles, stored segment outputs), `library`
    the whole library's `tag_profile`; `same_file` the track that is the query's very file or link, when
    the store knows one; `fingerprinted` the tracks the query's fingerprint matched (`recognised`).
    Matches of tracks not in `rows` (no longer ready) are dropped."""
    fingerprinted = fingerprinted or {}
    by_id = {r.id: r for r in rows}
    out = []
    for m in matches:
        row = by_id.get(m.track_id)
        if row is None:
            continue
        same = m.track_id == same_file or is_own_recording(m, row, fingerprinted)
        out.append(Explained(m.track_id, row.title, round(m.score, 4),
                             _reason(m, row, tracks.get(m.track_id), query, library, same), same))
    return sorted(out, key=lambda e: not e.same_recording)
