"""/recommend mood:X on a library of real commercial songs: how many of a new member's picks fit X.

The library is 4Q's development songs (`../shared/data/mood4q-dev`), cut and passed through the front-end as
uploads are, in two halves by artist. Cross-fitted: each half is scored by the shipped recipe
(core.training.mood_train.fit_heads) fitted on the other half only, so no song is scored by a model that
heard it, and is then a server's library of about 290 songs for core.recommend. A pick fits calm if it is
Q4, happy Q1, sad Q3, tense Q2, energetic Q1 or Q2 (the team's reading of its held-back check).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest

from core.config import DEFAULT_MODELS_DIR
from core.embedding import embed
from core.features import SegmentFeatures
from core.mood import MOODS, read_artefact
from core.recommend import TrackInfo, UserSignals, recommend

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]
log = logging.getLogger(__name__)

K = 10
NEW_MEMBER = UserSignals(user_id=424242)


def test_a_new_members_picks_fit_the_mood(shared_data: Path) -> None:
    from core.training.genre_data import embed_clips
    from core.training.mood_sources import _clips, read_emotify, read_fourq
    from core.training.mood_train import (
        AUGMENTED,
        DEFAULT_CACHE,
        FITS,
        Recipe,
        fit_heads,
        load_features,
    )

    fourq = read_fourq(shared_data / "mood4q-dev")
    emotify = read_emotify(shared_data / "emotify")
    _, meta = read_artefact(DEFAULT_MODELS_DIR / "mood.npz")
    recipe = Recipe(**meta["recipe"])
    feats = load_features(fourq, emotify, DEFAULT_MODELS_DIR, DEFAULT_CACHE, 2,
                          variants=AUGMENTED if recipe.augment else ())
    segments = embed_clips(_clips("mood4q", fourq.files), "clean", models_dir=DEFAULT_MODELS_DIR,
                           cache_dir=DEFAULT_CACHE)
    half = np.array([int(hashlib.sha256(a.encode()).hexdigest(), 16) % 2 for a in fourq.artists])
    moods = np.zeros((len(fourq.files), len(MOODS)))
    for side in (0, 1):
        heads = fit_heads(recipe, feats, fourq, emotify, np.flatnonzero(half != side),
                          np.arange(len(emotify.genres)))
        moods[half == side] = heads.moods(feats.clean[half == side])

    fit_share: dict[str, list[float]] = {m: [] for m in FITS}
    for side in (0, 1):
        library = []
        for i in np.flatnonzero(half == side):
            mine = segments.clip == i
            features = SegmentFeatures(None, starts=np.zeros(int(mine.sum())), clip_seconds=30.0,
                                       embeddings=segments.penultimate[mine], tags=segments.tags[mine])
            library.append(TrackInfo(int(i), fourq.songs[i], embed(features),
                                     moods=dict(zip(MOODS, moods[i].tolist()))))
        for mood, quadrants in FITS.items():
            picks = recommend(library, NEW_MEMBER, mood, K, now=0.0)
            assert len(picks) == K and all(0.0 <= p.score <= 1.0 for p in picks)
            picked = fourq.quadrant[[p.track_id for p in picks]]
            fit_share[mood].append(float(np.isin(picked, quadrants).mean()))
    per_mood = {m: float(np.mean(v)) for m, v in fit_share.items()}
    log.warning("share of %d picks that fit, per mood (mean of the two halves): %s", K,
                {m: round(v * K, 1) for m, v in per_mood.items()})
    assert np.mean(list(per_mood.values())) >= 0.6, per_mood
    assert min(per_mood.values()) >= 0.4, per_mood
