"""core.similar's answers on hand-made matches: labels that scale with the score, the query's own
recording first, and reasons that name what two tracks share."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from core import fingerprint, similar
from core.constants import SAMPLE_RATE
from core.recommend import TrackInfo
from core.segment_match import SegmentMatch
from core.similar import QueryProfile, clock, explain_matches, strength, tag_profile

AMBIENT, ROCK = similar.TAG_NAMES.index("ambient"), similar.TAG_NAMES.index("rock")


def tags(**high: float) -> np.ndarray:
    """(2, 50) segment tag probabilities, 0.05 everywhere but the named tags."""
    t = np.full((2, 50), 0.05, np.float32)
    for name, value in high.items():
        t[:, similar.TAG_NAMES.index(name.replace("_", " "))] = value
    return t


ANALYSED = f"frontend=x|{fingerprint.VERSION_TAG}"
"""An analysis version naming today's fingerprint recipe (core.similar.stored_fingerprint reads it)."""


def row(track_id: int, title: str, segment_tags: np.ndarray, fingerprint: np.ndarray | None = None,
        starts: tuple[float, ...] = (0.0, 75.0), duration: float = 78.0) -> SimpleNamespace:
    """A library row; without a fingerprint, as a track analysed before fingerprints were kept."""
    return SimpleNamespace(id=track_id, title=title, segment_tags=segment_tags, duration=duration,
                           segment_starts=np.array(starts, np.float32), fingerprint=fingerprint,
                           analysis_version=ANALYSED)


def landmarks(seed: int, n: int = 600) -> np.ndarray:
    """(n, 2) made-up landmarks, sorted as fingerprints are: random keys (hash and level), one every frame."""
    rng = np.random.default_rng(seed)
    out = np.stack([rng.integers(0, 1 << 32, n), np.arange(n)], axis=1).astype(np.uint32)
    return out[np.argsort(out[:, 0])]


ROWS = [row(1, "Dawn", tags(ambient=0.6)), row(2, "Riff", tags(rock=0.7)), row(3, "Plain", tags()),
        row(4, "Plain too", tags()), row(5, "Mist", tags(ambient=0.5))]
TRACKS = {r.id: TrackInfo(r.id, r.title, np.ones(4, np.float32), moods={"calm": 0.8}, genre="classical")
          for r in ROWS}
LIBRARY = tag_profile(r.segment_tags for r in ROWS)
QUERY = QueryProfile(title="upload.mp3", tags=tags(ambient=0.7).mean(axis=0), starts=np.array([0.0, 3.0]),
                     moods={"calm": 0.9}, genre="classical")


def test_labels_scale_with_the_score_and_say_nothing_alike_below_weak() -> None:
    assert strength(0.99) == "strongly" and strength(similar.STRONG) == "strongly"
    assert strength(similar.CLEAR) == "clearly" and strength(similar.WEAK) == "weakly"
    assert strength(similar.WEAK - 0.01) is None
    matches = [SegmentMatch(5, similar.CLEAR + 0.01, 1, 1, 0.9), SegmentMatch(3, 0.10, 0, 0, 0.2)]
    near, far = explain_matches(matches, TRACKS, QUERY, ROWS, library=LIBRARY)
    assert near.reason.startswith("clearly alike") and not near.same_recording
    assert far.reason.startswith("the nearest this library has, though not much alike")
    assert "alike;" not in far.reason.replace("not much alike", "")


def test_a_reason_names_the_matching_section_and_what_the_two_share_that_others_do_not() -> None:
    [got] = explain_matches([SegmentMatch(5, similar.STRONG + 0.01, 1, 1, 0.95)], TRACKS, QUERY, ROWS,
                            library=LIBRARY)
    assert got.reason == ("strongly alike; its 1:15 sounds like 0:03 of yours; both ambient; both sound calm; "
                          "both classical")
    [rock] = explain_matches([SegmentMatch(2, 0.86, 0, 0, 0.95)], TRACKS, QUERY, ROWS, library=LIBRARY)
    assert "rock" not in rock.reason and "ambient" not in rock.reason  # the query does not fire on rock


def test_the_query_own_recording_comes_first_and_says_so() -> None:
    matches = [SegmentMatch(5, 0.975, 0, 0, 0.98), SegmentMatch(1, 0.97, 0, 1, 0.99)]
    first, second = explain_matches(matches, TRACKS, QUERY, ROWS, library=LIBRARY)
    assert first.track_id == 1 and first.same_recording  # above both thresholds: moved first
    assert first.reason.startswith("this is Dawn, already in the library")
    assert not second.same_recording and second.track_id == 5
    [by_file] = explain_matches([SegmentMatch(3, 0.5, 0, 0, 0.6)], TRACKS, QUERY, ROWS, library=LIBRARY,
                                same_file=3)
    assert by_file.same_recording  # the very file, whatever the score
    removed = explain_matches([SegmentMatch(99, 0.9, 0, 0, 0.9)], TRACKS, QUERY, ROWS, library=LIBRARY)
    assert removed == []  # removed since
    [tone] = explain_matches([SegmentMatch(3, 0.990, 0, 1, 0.991)], TRACKS, QUERY, ROWS,
                             library=LIBRARY)
    assert not tone.same_recording  # a held tone matches every window alike: no moment was found


def test_with_a_fingerprint_only_the_fingerprint_calls_a_track_the_same() -> None:
    """A track that has a fingerprint is called the query's recording when the fingerprint matched, however
    its embeddings score, and never on its embeddings alone; one without keeps the embedding rule."""
    sections = (0.0, 3.0, 6.0, 9.0)  # frames 0-128, 129-257, 258-386, 387-515
    own, other = landmarks(1), landmarks(2)
    rows = [row(1, "Dawn", tags(), own, sections, 14.0), row(2, "Riff", tags(), other, sections, 14.0),
            row(3, "Old", tags())]
    query = own[(own[:, 1] >= 100) & (own[:, 1] < 300)].copy()
    query[:, 1] -= 100  # an excerpt: its clock starts 100 frames into the track; it covers one section
    fingerprinted = similar.recognised(query, rows)
    assert list(fingerprinted) == [1] and fingerprinted[1].count == 200
    assert fingerprinted[1].offset == pytest.approx(100 * fingerprint.HOP / SAMPLE_RATE)
    above_rule = SegmentMatch(2, 0.975, 0, 1, 0.99)  # what the embedding rule alone would call the same
    matches = [above_rule, SegmentMatch(1, 0.6, 0, 0, 0.7), SegmentMatch(3, 0.975, 0, 1, 0.99)]
    got = {e.track_id: e.same_recording for e in explain_matches(matches, TRACKS, QUERY, rows,
                                                                library=LIBRARY,
                                                                fingerprinted=fingerprinted)}
    assert got == {1: True, 2: False, 3: True}
    assert similar.recognised(query[:similar.SAME_LANDMARKS - 1], rows) == {}  # too few landmarks agree
    assert similar.recognised(None, rows) == {}


def test_a_track_that_shares_one_passage_is_not_the_same_recording() -> None:
    """Another cue with one section note for note the same as the query's track (an intro, a loop): many
    landmarks agree, but only on one of the sections the query covers."""
    sections = (0.0, 3.0, 6.0, 9.0)
    own = landmarks(1)
    cue = landmarks(3)
    passage = (own[:, 1] >= 129) & (own[:, 1] < 258)
    cue = np.concatenate([cue[(cue[:, 1] < 129) | (cue[:, 1] >= 258)], own[passage]])
    cue = cue[np.argsort(cue[:, 0])]
    query = own[(own[:, 1] >= 129) & (own[:, 1] < 387)].copy()  # covers the shared section and the next
    query[:, 1] -= 129
    rows = [row(1, "Dawn", tags(), own, sections, 14.0), row(4, "Cue", tags(), cue, sections, 14.0)]
    assert fingerprint.match(query, cue).count == 129 >= similar.SAME_LANDMARKS
    assert list(similar.recognised(query, rows)) == [1]


def test_a_cue_that_shares_only_the_intro_hangs_off_the_track_start() -> None:
    """A query whose second half is a track's intro note for note: its landmarks agree on the intro's
    sections, but placed there the query would start 7 s before the track does."""
    own, before = landmarks(1), landmarks(5)
    intro = own[own[:, 1] < 300].copy()
    intro[:, 1] += 300
    query = np.concatenate([before[before[:, 1] < 300], intro])
    rows = [row(1, "Dawn", tags(), own, (0.0, 3.0, 6.0, 9.0), 14.0)]
    found = fingerprint.match(query, own)
    assert found.count == 300 and found.offset == pytest.approx(-300 * fingerprint.HOP / SAMPLE_RATE)
    assert similar.recognised(query, rows) == {}
    assert list(similar.recognised(intro, rows)) == [1]  # the intro alone is an excerpt


def test_clock_floors_minutes() -> None:
    assert [clock(s) for s in (0, 59.6, 63, 600)] == ["0:00", "0:59", "1:03", "10:00"]


def _report(same: bool):
    from core.service import SimilarReport, TrackHit

    hits = [TrackHit(1, "Dawn", "/m/dawn.ogg", 0.95, "this is Dawn, already in the library", True)] if same else []
    hits += [TrackHit(5, "Mist", "/m/mist.ogg", 0.86, "strongly alike; both ambient", False)]
    return SimilarReport(query="upload.mp3", results=hits)


def test_cli_and_json_say_this_is_the_track_first_and_the_rest_sounds_like() -> None:
    from core.cli.similar import render_similar

    text = render_similar(_report(same=True))
    assert text.splitlines()[0] == "upload.mp3: this is *Dawn* [1], already in the library (0.95)."
    assert text.splitlines()[1] == "sounds like:" and "Mist" in text.splitlines()[2]
    assert _report(same=True).to_dict()["same_recording"]["title"] == "Dawn"
    assert _report(same=False).to_dict()["same_recording"] is None
    assert render_similar(_report(same=False)).startswith("closest to upload.mp3:\n1. [5] Mist")


def test_the_bot_embed_opens_with_this_is_title() -> None:
    from bot.render import similar_embed

    description = similar_embed(_report(same=True), page=0, per_page=5).description
    assert description.startswith("🎯 This is **Dawn**, already in the library.")
    assert "**Sounds like**\n**2. Mist**" in description
    assert "This is" not in similar_embed(_report(same=False), page=0, per_page=5).description
