"""Personalised recommendation, as pure functions over what the store loaded (/similar's answers: core.similar).

`recommend` ranks library tracks for one user and one mood by a blend of
  mood fit   the user's own tag > other listeners' tags > the audio's estimated mood (in that order of trust),
  taste      cosine similarity to the centroid of the tracks they liked or asked about,
  feedback   thumbs down: never again; thumbs up: a boost,
  novelty    a penalty for tracks recommended to them recently, fading with a half-life,
then picks the k results greedily by maximal marginal relevance (MMR) so they are not near-duplicates.
Every result says in one line why it was picked. No I/O here: the service loads, this decides.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np

from core.embedding import EMBEDDING_KIND, embedder

# --- Mood fit. Tiers are built so that, other things equal, the user's own tag outranks any amount of
# others' tagging plus the best estimate (1.0 > 0.45 + 0.30), and one tag by someone else outranks the most
# confident estimate (0.35 > 0.30): people who listened know better than a model trained on 200 excerpts.
OWN_TAG_WEIGHT = 1.0
"""The user said so themselves: the strongest evidence of what *they* call this mood."""
OTHERS_TAG_WEIGHT = 0.35
"""One tag by another listener of this server."""
OTHERS_TAG_EXTRA = 0.10
"""What further tags by others add, saturating (half of it at the 2nd tag, 3/4 at the 3rd, ...): agreement
matters, but a crowd must not outvote the user's own ear."""
ESTIMATE_WEIGHT = 0.30
"""Times the estimated mood score in [0, 1] (0.5 = typical, see core.mood): a guess from audio, useful
mostly where nobody has tagged."""

# --- Taste and feedback.
TASTE_WEIGHT = 0.40
"""Times the cosine to the user's taste centroid. Below the own-tag weight (what they ask for now matters
more than what they liked before) but enough to reorder tracks of similar mood fit."""
QUERIED_WEIGHT = 0.5
"""A track the user only asked about counts half as much as one they liked in the taste centroid."""
LIKED_BOOST = 0.15
"""A thumbs-up track gets this much on top: they told us they want to hear it."""

# --- Novelty and diversity.
NOVELTY_PENALTY = 0.8
"""Penalty for a track recommended to this user just now: it drops even an own-tagged track below others of
a fitting mood, so asking twice in a row gives fresh music."""
NOVELTY_HALF_LIFE_S = 12 * 3600.0
"""The penalty halves every 12 hours: tomorrow the same favourites may come back."""
DIVERSITY_WEIGHT = 0.3
"""MMR: a candidate loses this times its highest cosine to an already picked result, so a cluster of
near-identical tracks yields one pick until its others are clearly better than the alternatives."""

# --- Explanations.
ESTIMATE_SAYS = 0.7
"""Estimated mood score from which a track is described as "sounds <mood>" (about half a standard
deviation above a typical excerpt)."""

TYPICAL_ESTIMATE = 0.5
"""An estimate above a typical excerpt's is still worth a softer "sounds somewhat <mood>"."""

HIGH_IN_LIBRARY = 2 / 3
RELATIVE_MIN_TRACKS = 5
"""Below a typical estimate, a track in the top third of its library for the mood is said to "rank high
for <mood> in this library" (a library of game music has no calm track by absolute standards, yet its
calmest are the right answer to /recommend mood:calm); only in libraries of at least 5 tracks, where a
rank means something."""

QUERY_KIND = "similar"
RECOMMENDED_KIND = "recommended"
"""History kinds (core.store) read by UserSignals.from_store."""


@dataclass(frozen=True)
class TrackInfo:
    """One library track, the same for every user. `embedding` is unit length (core.embedding), `moods`
    the estimated scores in [0, 1] (core.mood), `taggers` maps a mood to the ids of users who tagged the
    track so, `genre` is the genre verdict when there is one."""

    track_id: int
    title: str
    embedding: np.ndarray
    moods: Mapping[str, float] = field(default_factory=dict)
    taggers: Mapping[str, frozenset[int]] = field(default_factory=dict)
    genre: str | None = None

    @classmethod
    def from_row(cls, row: Any, tags: Iterable[tuple[int, str]]) -> TrackInfo:
        """From a core.store.TrackRow (id, title, embedding, mood_scores, genre) and its (user_id, mood)
        tags."""
        taggers: dict[str, set[int]] = {}
        for user_id, mood in tags:
            taggers.setdefault(mood, set()).add(user_id)
        return cls(track_id=row.id, title=row.title, embedding=np.asarray(row.embedding, dtype=np.float32),
                   moods=dict(row.mood_scores or {}), taggers={m: frozenset(u) for m, u in taggers.items()},
                   genre=row.genre)

    def tagged_by(self, user_id: int | None, mood: str) -> bool:
        return user_id is not None and user_id in self.taggers.get(mood, frozenset())

    def others_tagged(self, user_id: int | None, mood: str) -> int:
        """How many users other than `user_id` tagged the track `mood`."""
        return len(self.taggers.get(mood, frozenset()) - {user_id})


@dataclass(frozen=True)
class UserSignals:
    """What one user has told us. `recently_recommended` maps a track id to the Unix time (s) it was last
    recommended to them. `UserSignals()` is an anonymous user with no history."""

    user_id: int | None = None
    liked_ids: frozenset[int] = frozenset()
    disliked_ids: frozenset[int] = frozenset()
    queried_ids: frozenset[int] = frozenset()
    recently_recommended: Mapping[int, float] = field(default_factory=dict)

    @classmethod
    def from_store(cls, user_id: int, *, feedback: Mapping[int, int],
                   history: Iterable[tuple[str, str, int | None, str, str | None]]) -> UserSignals:
        """From core.store: feedback {track_id: +1 | -1} and history rows (created_at ISO-8601 UTC, kind,
        track_id, detail, title). Tracks returned to their similar-queries count as asked about."""
        queried: set[int] = set()
        recommended: dict[int, float] = {}
        for created_at, kind, track_id, _detail, _title in history:
            if track_id is None:
                continue
            if kind == QUERY_KIND:
                queried.add(track_id)
            elif kind == RECOMMENDED_KIND:
                when = _unix_time(created_at)
                recommended[track_id] = max(when, recommended.get(track_id, when))
        return cls(user_id=user_id,
                   liked_ids=frozenset(t for t, v in feedback.items() if v > 0),
                   disliked_ids=frozenset(t for t, v in feedback.items() if v < 0),
                   queried_ids=frozenset(queried), recently_recommended=recommended)


def _unix_time(iso: str) -> float:
    """The store writes UTC ("...Z"); a time without a zone is taken as UTC too, never as local time."""
    moment = datetime.fromisoformat(iso)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


@dataclass(frozen=True)
class Recommendation:
    """`score`: the blended relevance less the diversity penalty when it was picked (non-increasing)."""

    track_id: int
    title: str
    score: float
    reason: str


def mood_fit(track: TrackInfo, mood: str, user_id: int | None) -> float:
    """Evidence that `track` is `mood` for this user, on the tiered scale documented above."""
    fit = ESTIMATE_WEIGHT * float(track.moods.get(mood, 0.0))
    if track.tagged_by(user_id, mood):
        fit += OWN_TAG_WEIGHT
    others = track.others_tagged(user_id, mood)
    if others > 0:
        fit += OTHERS_TAG_WEIGHT + OTHERS_TAG_EXTRA * (1.0 - 0.5 ** (others - 1))
    return fit


def novelty_penalty(recommended_at: float | None, now: float) -> float:
    if recommended_at is None:
        return 0.0
    return NOVELTY_PENALTY * 0.5 ** (max(0.0, now - recommended_at) / NOVELTY_HALF_LIFE_S)


def taste_centroid(tracks_by_id: Mapping[int, TrackInfo], user: UserSignals) -> np.ndarray | None:
    """Weighted mean of liked (1) and only-asked-about (QUERIED_WEIGHT) embeddings, unit length; None
    without usable history. Disliked tracks never count, even if the user also asked about them."""
    weighted = [(tid, 1.0) for tid in user.liked_ids]
    weighted += [(tid, QUERIED_WEIGHT) for tid in user.queried_ids - user.liked_ids]
    vectors = [w * np.asarray(tracks_by_id[tid].embedding, dtype=np.float64) for tid, w in weighted
               if tid in tracks_by_id and tid not in user.disliked_ids]
    if not vectors:
        return None
    centroid = np.sum(vectors, axis=0)
    norm = float(np.linalg.norm(centroid))
    return centroid / norm if norm > 0 else None


def recommend(tracks: list[TrackInfo], user: UserSignals, mood: str, k: int, *,
              now: float | None = None) -> list[Recommendation]:
    """Up to `k` tracks for `user` in `mood` (validated by the caller), best first, each with a one-line
    reason. Thumbs-down tracks are never returned. `now` (Unix s) defaults to the current time."""
    now = time.time() if now is None else now
    candidates = [t for t in tracks if t.track_id not in user.disliked_ids]
    if not candidates or k <= 0:
        return []
    by_id = {t.track_id: t for t in tracks}
    centroid = taste_centroid(by_id, user)
    emb = np.stack([np.asarray(t.embedding, dtype=np.float64) for t in candidates])
    relevance = np.array([
        mood_fit(t, mood, user.user_id)
        + (LIKED_BOOST if t.track_id in user.liked_ids else 0.0)
        - novelty_penalty(user.recently_recommended.get(t.track_id), now)
        for t in candidates
    ])
    if centroid is not None:
        relevance += TASTE_WEIGHT * (emb @ centroid)
    anchors = [by_id[tid] for tid in sorted(user.liked_ids | user.queried_ids)
               if tid in by_id and tid not in user.disliked_ids]
    high = library_high(tracks, mood)
    return [
        Recommendation(candidates[i].track_id, candidates[i].title, round(score, 4),
                       _recommend_reason(candidates[i], mood, user, anchors, high))
        for i, score in _mmr(emb, relevance, k)
    ]


def library_high(tracks: list[TrackInfo], mood: str) -> float:
    """The estimate from which a track ranks in the top third of `tracks` for `mood` (inf: too few)."""
    if len(tracks) < RELATIVE_MIN_TRACKS:
        return float("inf")
    return float(np.quantile([t.moods.get(mood, 0.0) for t in tracks], HIGH_IN_LIBRARY))


def _mmr(emb: np.ndarray, relevance: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Greedy maximal marginal relevance: each pick maximises relevance minus DIVERSITY_WEIGHT times its
    highest (positive) cosine to the picks so far; ties go to the earlier track, so results are stable.
    Returns (index, that marginal score): the scores never increase down the list, as a reader expects."""
    picked: list[tuple[int, float]] = []
    closest = np.zeros(len(relevance))
    available = np.ones(len(relevance), dtype=bool)
    for _ in range(min(k, len(relevance))):
        marginal = np.where(available, relevance - DIVERSITY_WEIGHT * closest, -np.inf)
        best = int(np.argmax(marginal))
        picked.append((best, float(marginal[best])))
        available[best] = False
        closest = np.maximum(closest, emb @ emb[best])
    return picked


def _recommend_reason(track: TrackInfo, mood: str, user: UserSignals, anchors: list[TrackInfo],
                      high: float) -> str:
    """The strongest mood evidence, then the taste link if any, e.g. "tagged calm by you; close to Aurora
    you liked"."""
    parts: list[str] = []
    others = track.others_tagged(user.user_id, mood)
    if track.tagged_by(user.user_id, mood):
        parts.append(f"tagged {mood} by you")
    elif others > 1:
        parts.append(f"{others} others tagged it {mood}")
    elif others == 1:
        parts.append(f"another listener tagged it {mood}")
    elif track.moods.get(mood, 0.0) >= ESTIMATE_SAYS:
        parts.append(f"sounds {mood}")
    if track.track_id in user.liked_ids:
        parts.append("you liked it")
    else:
        anchor = _closest(track, anchors)
        if anchor is not None:
            verb = "liked" if anchor.track_id in user.liked_ids else "asked about"
            parts.append(f"close to {anchor.title} you {verb}")
    if not parts:
        estimate = track.moods.get(mood, 0.0)
        if estimate >= TYPICAL_ESTIMATE:
            parts.append(f"sounds somewhat {mood}")
        elif estimate >= high:
            parts.append(f"ranks high for {mood} in this library")
        else:
            parts.append("picked for variety")
    return "; ".join(parts)


def _closest(track: TrackInfo, anchors: list[TrackInfo]) -> TrackInfo | None:
    """The anchor most similar to `track`, if it is at least `close` for the shipped embedding kind."""
    threshold = embedder(EMBEDDING_KIND).close
    sims = [(float(np.dot(track.embedding, a.embedding)), a) for a in anchors if a.track_id != track.track_id]
    sim, anchor = max(sims, key=lambda pair: pair[0], default=(-1.0, None))
    return anchor if sim >= threshold else None
