"""core.recommend on hand-made libraries: each rule of the blend, the reasons, and the store adapters."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from core.recommend import (
    NOVELTY_HALF_LIFE_S,
    TrackInfo,
    UserSignals,
    recommend,
    similar_results,
)

ME, OTHER = 1, 2
NOW = 1_800_000_000.0


def vec(*xs: float) -> np.ndarray:
    v = np.zeros(8)
    v[: len(xs)] = xs
    return (v / np.linalg.norm(v)).astype(np.float32)


def axis(i: int, wobble: float = 0.0) -> np.ndarray:
    """Unit vector along axis i, tilted by `wobble` towards the last axis (near-duplicates of one axis)."""
    v = np.zeros(8)
    v[i] = 1.0
    v[7] = wobble
    return (v / np.linalg.norm(v)).astype(np.float32)


def track(tid: int, emb: np.ndarray, *, calm: float = 0.5, mine: bool = False, others: int = 0,
          genre: str | None = None) -> TrackInfo:
    taggers = set(range(100, 100 + others)) | ({ME} if mine else set())
    return TrackInfo(tid, f"T{tid}", emb, moods={"calm": calm, "happy": 0.5},
                     taggers={"calm": frozenset(taggers)} if taggers else {}, genre=genre)


def ids(results) -> list[int]:
    return [r.track_id for r in results]


def test_empty_library_and_non_positive_k_give_nothing():
    assert recommend([], UserSignals(user_id=ME), "calm", 5, now=NOW) == []
    assert recommend([track(1, axis(0))], UserSignals(user_id=ME), "calm", 0, now=NOW) == []


def test_thumbs_down_is_never_returned_even_when_tagged_and_k_exceeds_the_library():
    tracks = [track(1, axis(0), calm=1.0, mine=True, others=5), track(2, axis(1)), track(3, axis(2))]
    user = UserSignals(user_id=ME, disliked_ids=frozenset({1}), liked_ids=frozenset({2}))
    got = recommend(tracks, user, "calm", 10, now=NOW)
    assert ids(got) == [2, 3]


def test_own_tag_beats_others_tags_beats_the_estimate():
    tracks = [
        track(1, axis(0), calm=0.5),                       # nothing but a typical estimate
        track(2, axis(1), calm=1.0),                       # the most confident estimate
        track(3, axis(2), calm=0.0, others=1),             # one other listener's tag
        track(4, axis(3), calm=0.0, others=10),            # a crowd of tags
        track(5, axis(4), calm=0.0, mine=True),            # my tag alone
    ]
    got = recommend(tracks, UserSignals(user_id=ME), "calm", 5, now=NOW)
    assert ids(got) == [5, 4, 3, 2, 1]
    crowd_and_sound = track(6, axis(5), calm=1.0, others=50)
    assert ids(recommend([crowd_and_sound, tracks[4]], UserSignals(user_id=ME), "calm", 1, now=NOW)) == [5]


def test_my_tag_counts_as_mine_only_for_me():
    tagged = track(1, axis(0), calm=0.0, mine=True)
    for_me = recommend([tagged], UserSignals(user_id=ME), "calm", 1, now=NOW)[0]
    for_other = recommend([tagged], UserSignals(user_id=OTHER), "calm", 1, now=NOW)[0]
    assert for_me.reason.startswith("tagged calm by you")
    assert for_other.reason.startswith("another listener tagged it calm")
    assert for_me.score > for_other.score


def test_liked_centroid_reorders_tracks_of_equal_mood():
    liked = track(10, vec(0, 0, 0, 0, 1, 1), calm=0.0)
    near_liked = track(1, vec(0, 0, 0, 0, 1, 0.8), calm=0.55)
    far = track(2, vec(1, 0, 0, 0, 0, 0), calm=0.6)
    library = [far, near_liked, liked]
    cold = recommend(library, UserSignals(user_id=ME), "calm", 3, now=NOW)
    assert ids(cold)[:2] == [2, 1]
    warm = recommend(library, UserSignals(user_id=ME, liked_ids=frozenset({10})), "calm", 3, now=NOW)
    assert ids(warm).index(1) < ids(warm).index(2)
    assert next(r for r in warm if r.track_id == 1).reason == "likely sounds calm; close to T10 you liked"


def test_queried_tracks_shape_taste_too_and_are_explained_as_asked_about():
    asked = track(10, vec(0, 0, 0, 0, 1, 1), calm=0.0)
    near = track(1, vec(0, 0, 0, 0, 1, 0.8), calm=0.55)
    far = track(2, vec(1, 0, 0, 0, 0, 0), calm=0.6)
    user = UserSignals(user_id=ME, queried_ids=frozenset({10}))
    got = recommend([far, near, asked], user, "calm", 2, now=NOW)
    assert ids(got)[0] == 1
    assert got[0].reason == "likely sounds calm; close to T10 you asked about"


def test_thumbs_up_boosts_and_says_so():
    a, b = track(1, axis(0), calm=0.6), track(2, axis(1), calm=0.6)
    got = recommend([a, b], UserSignals(user_id=ME, liked_ids=frozenset({2})), "calm", 2, now=NOW)
    assert ids(got) == [2, 1]
    assert got[0].reason == "likely sounds calm; you liked it"


def test_novelty_demotes_what_was_just_recommended_and_forgets_it_with_time():
    best, runner_up = track(1, axis(0), calm=0.0, mine=True), track(2, axis(1), calm=0.9, others=2)
    just_now = UserSignals(user_id=ME, recently_recommended={1: NOW - 60})
    got = recommend([best, runner_up], just_now, "calm", 2, now=NOW)
    assert ids(got) == [2, 1]
    assert got[1].reason == "tagged calm by you; recommended to you just now, so it comes later this time"
    assert got[1].score == 1.0  # its fit is unchanged: only its place in the list moved
    last_week = UserSignals(user_id=ME, recently_recommended={1: NOW - 14 * NOVELTY_HALF_LIFE_S})
    assert ids(recommend([best, runner_up], last_week, "calm", 2, now=NOW)) == [1, 2]


def test_cold_start_returns_k_diverse_results():
    """Three clusters of near-duplicates; the best-sounding cluster alone would fill the top three."""
    clusters = {0: 0.95, 1: 0.75, 2: 0.7}
    library = [track(10 * c + j, axis(c, wobble=0.05 * j), calm=calm - 0.01 * j)
               for c, calm in clusters.items() for j in range(3)]
    relevance_only = sorted(library, key=lambda t: -t.moods["calm"])[:3]
    assert {t.track_id // 10 for t in relevance_only} == {0}
    got = recommend(library, UserSignals(), "calm", 3, now=NOW)
    assert len(got) == 3
    assert {r.track_id // 10 for r in got} == {0, 1, 2}
    assert got[0].track_id == 0
    assert all(r.reason for r in got)
    assert [r.score for r in got] == [0.95, 0.75, 0.7]  # each pick's fit: its estimate


def test_k_larger_than_the_library_returns_every_track_once():
    library = [track(i, axis(i)) for i in range(4)]
    got = recommend(library, UserSignals(user_id=ME), "calm", 50, now=NOW)
    assert sorted(ids(got)) == [0, 1, 2, 3]


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"mine": True, "others": 3}, "tagged calm by you"),
    ({"others": 3}, "3 others tagged it calm"),
    ({"others": 1}, "another listener tagged it calm"),
    ({"calm": 0.9}, "sounds calm"),
    ({"calm": 0.6}, "likely sounds calm"),
    ({"calm": 0.1}, "nearest to calm in this library, though not clearly calm"),
])
def test_reason_names_the_strongest_mood_evidence(kwargs, reason):
    got = recommend([track(1, axis(0), **kwargs)], UserSignals(user_id=ME), "calm", 1, now=NOW)
    assert got[0].reason == reason


def test_in_a_library_with_no_calm_music_the_calmest_come_in_order_and_say_so():
    """Game soundtracks: no calm estimate reaches FIT_ESTIMATE; /recommend mood:calm still answers, with the
    calmest first in strict order (no variety reshuffling what does not fit) and an honest reason."""
    library = [track(i, axis(i % 7), calm=0.05 + 0.03 * i) for i in range(9)]
    got = recommend(library, UserSignals(user_id=ME), "calm", 4, now=NOW)
    assert ids(got) == [8, 7, 6, 5]
    assert {r.reason for r in got} == {"nearest to calm in this library, though not clearly calm"}


def test_mood_comes_first_variety_taste_and_likes_never_bring_in_a_track_that_does_not_fit():
    """Four near-identical calm tracks and a distinct, liked, tasteful one that is not calm: every calm
    one comes before it, however alike they are."""
    calm = [track(i, axis(0, wobble=0.02 * i), calm=0.9 - 0.1 * i) for i in range(4)]
    loud = track(9, axis(3), calm=0.2)
    user = UserSignals(user_id=ME, liked_ids=frozenset({9}))
    got = recommend([loud, *calm], user, "calm", 5, now=NOW)
    assert ids(got)[:4] == [0, 1, 2, 3] and ids(got)[4] == 9
    assert got[4].reason.startswith("nearest to calm in this library")


def test_scores_shown_are_fits_in_zero_one_whatever_the_penalties():
    library = [track(i, axis(i % 7), calm=c) for i, c in enumerate([0.0, 0.3, 0.55, 0.8, 1.0])]
    library.append(track(7, axis(6), calm=0.1, mine=True))
    user = UserSignals(user_id=ME, liked_ids=frozenset({3}),
                       recently_recommended={3: NOW - 3 * 3600, 7: NOW})
    got = recommend(library, user, "calm", 6, now=NOW)
    assert len(got) == 6 and all(0.0 <= r.score <= 1.0 for r in got)
    assert {r.track_id: r.score for r in got}[7] == 1.0
    liked = next(r for r in got if r.track_id == 3)
    assert liked.reason == ("sounds calm; you liked it; "
                            "recommended to you 3 h ago, so it comes later this time")
    everyone_lately = UserSignals(user_id=ME, recently_recommended={t.track_id: NOW for t in library})
    assert not any("later" in r.reason for r in recommend(library, everyone_lately, "calm", 6, now=NOW))


def test_user_signals_from_the_store():
    history = [
        ("2026-05-01T10:00:00.000Z", "recommended", 7, "calm", "T7"),
        ("2026-05-01T09:00:00.000Z", "recommended", 7, "calm", "T7"),
        ("2026-05-01T08:00:00.000Z", "similar", 8, "some link", "T8"),
        ("2026-05-01T08:00:00.000Z", "genre", None, "upload.mp3", None),
        ("2026-05-01T07:00:00.000Z", "tag", 9, "calm", "T9"),
    ]
    signals = UserSignals.from_store(ME, feedback={3: 1, 4: -1}, history=history)
    assert signals.user_id == ME
    assert signals.liked_ids == {3} and signals.disliked_ids == {4}
    assert signals.queried_ids == {8}
    assert signals.recently_recommended == {7: 1777629600.0}


def test_track_info_from_a_store_row():
    row = SimpleNamespace(id=5, title="Aurora", embedding=np.ones(4, dtype="<f4") / 2, genre="rock",
                          mood_scores={"calm": 0.8})
    info = TrackInfo.from_row(row, [(ME, "calm"), (OTHER, "calm"), (OTHER, "sad")])
    assert info.track_id == 5 and info.title == "Aurora" and info.genre == "rock"
    assert info.tagged_by(ME, "calm") and not info.tagged_by(ME, "sad")
    assert info.others_tagged(ME, "calm") == 1 and info.others_tagged(None, "calm") == 2


def test_similar_results_explain_closeness_shared_mood_and_genre():
    tracks = {1: track(1, axis(0), calm=0.9, genre="rock"), 2: track(2, axis(1), calm=0.2, genre="jazz"),
              3: track(3, axis(2), calm=0.5)}
    hits = [(1, 0.95), (99, 0.9), (2, 0.85), (3, 0.1)]  # musicnn-v1: very close >= 0.90, close >= 0.80
    got = similar_results(hits, tracks, None, query_moods={"calm": 0.8, "happy": 0.3}, query_genre="rock")
    assert ids(got) == [1, 2, 3]
    assert got[0].reason == "very close in timbre; also calm; both rock"
    assert got[1].reason == "close in timbre"
    assert got[2].reason == "somewhat alike in timbre"
    assert [r.score for r in got] == [0.95, 0.85, 0.1]
    titled = similar_results([(1, 0.95)], tracks, "my upload")
    assert titled[0].reason == "very close to my upload in timbre"
    assert similar_results([], tracks, None) == []
