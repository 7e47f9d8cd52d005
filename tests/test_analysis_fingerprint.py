"""The audio fingerprint is computed only when asked for: library tracks and /similar queries match it,
while /genre with a map and /map --mark embed a clip without ever matching a recording (20-30 ms a clip
saved there). The service's own callers are held to it by test_service's excerpt test (a query without
landmarks is not recognised) and test_fingerprint's reindex test (stored tracks carry landmarks)."""
from __future__ import annotations

import numpy as np

from core import fingerprint
from core.analysis import Limits, analyse
from core.audio import decode, load_segments, trim_silence
from core.cli.demo import DEMO_CLIPS
from core.config import Settings

CLIP = DEMO_CLIPS / "etr-race1.ogg"  # 15 s: five segments
LIMITS = Limits(Settings().models_dir, max_seconds=60.0, max_segments=3)


def test_an_embedding_alone_pays_for_no_fingerprint() -> None:
    result = analyse(CLIP, LIMITS, genre=False, mood=False, embedding=True)
    assert result.embedding is not None and result.segment_embeddings is not None
    assert result.fingerprint is None


def test_a_library_track_is_fingerprinted_on_its_analysed_sections() -> None:
    result = analyse(CLIP, LIMITS, genre=False, mood=False, fingerprint=True)
    sections = load_segments(CLIP, max_seconds=60.0, max_segments=3)
    expected = fingerprint.fingerprint_sections(sections.audio, sections.starts)
    assert result.fingerprint is not None and len(result.fingerprint) > 100
    np.testing.assert_array_equal(result.fingerprint, expected)


def test_a_query_is_fingerprinted_on_its_whole_clip() -> None:
    result = analyse(CLIP, LIMITS, genre=False, mood=False, fingerprint=True, hop=1.5)
    expected = fingerprint.fingerprint(trim_silence(decode(CLIP, max_seconds=60.0)))
    np.testing.assert_array_equal(result.fingerprint, expected)
