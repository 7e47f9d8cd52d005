"""Personalised recommendation and similar-track results, as pure functions over what the store loaded.

`recommend` answers "tracks for this mood" mood first:
  fit        a track fits the mood when the user tagged it so, another listener did, or its estimated
             mood score (core.mood: the probability that listeners would call it so) is at least
             FIT_ESTIMATE. Only fitting tracks are ranked; when fewer than k fit, the rest of the list is
             the library's nearest to the mood in strict order of their estimate, and says so.
  ranking    among fitting tracks, a blend of mood evidence (the user's own tag > other listeners' tags >
             the estimate), taste (cosine to the centroid of the tracks they liked or asked about), a
             thumbs-up boost and a novelty penalty for tracks recommended to them recently (fading with a
             half-life), picked greedily by maximal marginal relevance (MMR) so they are not near-duplicates.
             Variety and novelty thus only choose among tracks that fit; they never bring one in.
Thumbs-down tracks are never returned. The score shown is how well the track fits the mood, in [0, 1]
(`fit_score`), not the internal blend; every result says in one line why it was picked, including when it
was held back because it was recommended recently. No I/O here: the service loads, this decides.
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
# confident estimate (0.35 > 0.30): people who listened know better than a model.
OWN_TAG_WEIGHT = 1.0
"""The user said so themselves: the strongest evidence of what *they* call this mood."""
OTHERS_TAG_WEIGHT = 0.35
"""One tag by another listener of this server."""
OTHERS_TAG_EXTRA = 0.10
"""What further tags by others add, saturating (half of it at the 2nd tag, 3/4 at the 3rd, ...): agreement
matters, but a crowd must not outvote the user's own ear."""
ESTIMATE_WEIGHT = 0.30
"""Times the estimated mood score in [0, 1]: a guess from audio, useful mostly where nobody has tagged."""
FIT_ESTIMATE = 0.5
"""An untagged track fits a mood when the model finds it more likely than not that listeners would call
it so (core.mood's scores are probabilities)."""

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
DIVERSITY_WEIGHT = 0.15
"""MMR: a candidate loses this times its highest cosine to an already picked result, so a cluster of
near-identical tracks yields one pick until its others are clearly better than the alternatives. Half the
estimate's weight: among fitting tracks, how strongly one fits still leads."""

# --- Explanations.
ESTIMATE_SAYS = 0.7
"""Estimated mood score from which a track "sounds <mood>" (below it, down to FIT_ESTIMATE, it "likely
sounds <mood>")."""
OTHERS_TAG_FIT = 0.75
"""The fit shown for a track others tagged (more tags: closer to 1); the user's own tag shows 1."""

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


@dataclass(frozen=True)
class Similar:
    """`score`: the index's cosine similarity to the query."""

    track_id: int
    title: str
    score: float
    reason: str


def mood_fit(track: TrackInfo, mood: str, user_id: int | None) -> float:
    """Evidence that `track` is `mood` for this user, on the tiered scale documented above (ranking)."""
    fit = ESTIMATE_WEIGHT * float(track.moods.get(mood, 0.0))
    if track.tagged_by(user_id, mood):
        fit += OWN_TAG_WEIGHT
    others = track.others_tagged(user_id, mood)
    if others > 0:
        fit += OTHERS_TAG_WEIGHT + OTHERS_TAG_EXTRA * (1.0 - 0.5 ** (others - 1))
    return fit


def fits(track: TrackInfo, mood: str, user_id: int | None) -> bool:
    """Whether `track` answers a request for `mood` at all: tagged so by anyone, or estimated likely."""
    return (track.tagged_by(user_id, mood) or track.others_tagged(user_id, mood) > 0
            or float(track.moods.get(mood, 0.0)) >= FIT_ESTIMATE)


def fit_score(track: TrackInfo, mood: str, user_id: int | None) -> float:
    """How well `track` fits `mood` for this user, in [0, 1], as shown: 1 for their own tag, from
    OTHERS_TAG_FIT towards 1 for others' tags, else the estimate (whichever is highest)."""
    score = float(track.moods.get(mood, 0.0))
    if track.tagged_by(user_id, mood):
        return 1.0
    others = track.others_tagged(user_id, mood)
    if others > 0:
        score = max(score, 1.0 - (1.0 - OTHERS_TAG_FIT) * 0.5 ** (others - 1))
    return float(min(1.0, max(0.0, score)))


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
    """Up to `k` tracks for `user` in `mood` (validated by the caller), fitting ones first (see the module
    docstring), each with its fit in [0, 1] and a one-line reason. `now` (Unix s) defaults to the current
    time."""
    now = time.time() if now is None else now
    candidates = [t for t in tracks if t.track_id not in user.disliked_ids]
    if not candidates or k <= 0:
        return []
    fitting = [t for t in candidates if fits(t, mood, user.user_id)]
    by_id = {t.track_id: t for t in tracks}
    anchors = [by_id[tid] for tid in sorted(user.liked_ids | user.queried_ids)
               if tid in by_id and tid not in user.disliked_ids]
    order = _rank(fitting, user, mood, by_id, k, now)
    fresh_order = _rank(fitting, user, mood, by_id, len(fitting), now, novelty=False)
    held_back = {fitting[i].track_id for n, i in enumerate(order) if n > fresh_order.index(i)}
    picks = [(fitting[i], True) for i in order]
    if len(picks) < k:  # too few fit: the nearest to the mood, strictly by estimate, and said so
        rest = sorted((t for t in candidates if not fits(t, mood, user.user_id)),
                      key=lambda t: (-float(t.moods.get(mood, 0.0)), t.track_id))
        picks += [(t, False) for t in rest[: k - len(picks)]]
    return [
        Recommendation(t.track_id, t.title, round(fit_score(t, mood, user.user_id), 4),
                       _recommend_reason(t, mood, user, anchors, now, t.track_id in held_back) if fits_mood
                       else f"nearest to {mood} in this library, though not clearly {mood}")
        for t, fits_mood in picks
    ]


def _rank(fitting: list[TrackInfo], user: UserSignals, mood: str, by_id: Mapping[int, TrackInfo], k: int,
          now: float, *, novelty: bool = True) -> list[int]:
    """Indices into `fitting` of the MMR picks of the blended relevance, best first (without the novelty
    penalty when `novelty` is false: where each track would be if nothing had been recommended lately)."""
    if not fitting:
        return []
    centroid = taste_centroid(by_id, user)
    emb = np.stack([np.asarray(t.embedding, dtype=np.float64) for t in fitting])
    relevance = np.array([
        mood_fit(t, mood, user.user_id)
        + (LIKED_BOOST if t.track_id in user.liked_ids else 0.0)
        - (novelty_penalty(user.recently_recommended.get(t.track_id), now) if novelty else 0.0)
        for t in fitting
    ])
    if centroid is not None:
        relevance += TASTE_WEIGHT * (emb @ centroid)
    return [i for i, _ in _mmr(emb, relevance, k)]


def _mmr(emb: np.ndarray, relevance: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Greedy maximal marginal relevance: each pick maximises relevance minus DIVERSITY_WEIGHT times its
    highest (positive) cosine to the picks so far; ties go to the earlier track, so results are stable.
    Returns (index, that marginal score), best first."""
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


def _ago(seconds: float) -> str:
    hours = seconds / 3600.0
    return "just now" if hours < 1 else f"{hours:.0f} h ago" if hours < 48 else f"{hours / 24:.0f} days ago"


def _recommend_reason(track: TrackInfo, mood: str, user: UserSignals, anchors: list[TrackInfo],
                      now: float, held_back: bool) -> str:
    """The strongest mood evidence, then the taste link if any, then freshness when the track comes later
    than it would have because it was recommended lately (`held_back`), e.g. "tagged calm by you; you
    liked it; recommended to you 2 h ago, so it comes later this time"."""
    parts: list[str] = []
    others = track.others_tagged(user.user_id, mood)
    estimate = float(track.moods.get(mood, 0.0))
    if track.tagged_by(user.user_id, mood):
        parts.append(f"tagged {mood} by you")
    elif others > 1:
        parts.append(f"{others} others tagged it {mood}")
    elif others == 1:
        parts.append(f"another listener tagged it {mood}")
    elif estimate >= ESTIMATE_SAYS:
        parts.append(f"sounds {mood}")
    else:
        parts.append(f"likely sounds {mood}")
    if track.track_id in user.liked_ids:
        parts.append("you liked it")
    else:
        anchor = _closest(track, anchors)
        if anchor is not None:
            verb = "liked" if anchor.track_id in user.liked_ids else "asked about"
            parts.append(f"close to {anchor.title} you {verb}")
    when = user.recently_recommended.get(track.track_id)
    if held_back and when is not None:
        parts.append(f"recommended to you {_ago(max(0.0, now - when))}, so it comes later this time")
    return "; ".join(parts)


def _closest(track: TrackInfo, anchors: list[TrackInfo]) -> TrackInfo | None:
    """The anchor most similar to `track`, if it is at least `close` for the shipped embedding kind."""
    threshold = embedder(EMBEDDING_KIND).close
    sims = [(float(np.dot(track.embedding, a.embedding)), a) for a in anchors if a.track_id != track.track_id]
    sim, anchor = max(sims, key=lambda pair: pair[0], default=(-1.0, None))
    return anchor if sim >= threshold else None


def similar_results(hits: list[tuple[int, float]], tracks_by_id: Mapping[int, TrackInfo],
                    query_title: str | None = None, *, query_moods: Mapping[str, float] | None = None,
                    query_genre: str | None = None, kind: str = EMBEDDING_KIND) -> list[Similar]:
    """Index hits (track id, cosine similarity in [-1, 1], best first) -> results with one-line reasons.

    Hits no longer in `tracks_by_id` (removed since the index was built) are dropped. The query's
    estimated moods and genre, when known, add "also calm" / "both rock"."""
    kind_info = embedder(kind)
    query_mood = None
    if query_moods:
        top = max(query_moods, key=lambda m: query_moods[m])
        query_mood = top if query_moods[top] >= ESTIMATE_SAYS else None
    results = []
    for track_id, score in hits:
        track = tracks_by_id.get(track_id)
        if track is None:
            continue
        nearness = ("very close" if score >= kind_info.very_close
                    else "close" if score >= kind_info.close else "somewhat alike")
        parts = [f"{nearness} to {query_title} in timbre" if query_title else f"{nearness} in timbre"]
        if query_mood and track.moods.get(query_mood, 0.0) >= ESTIMATE_SAYS:
            parts.append(f"also {query_mood}")
        if query_genre and track.genre == query_genre:
            parts.append(f"both {query_genre}")
        results.append(Similar(track_id, track.title, round(float(score), 4), "; ".join(parts)))
    return results
