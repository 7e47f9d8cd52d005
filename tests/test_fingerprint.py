"""core.fingerprint on real audio: the demo clips, fingerprinted as the library fingerprints a track (on the
sections core.audio decodes), against excerpts of them re-encoded through the bundled ffmpeg as a user's
upload would reach us (64 kb/s mp3, 48 kb/s Opus, quieter). An excerpt finds its own clip; no excerpt is
called another clip's recording."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core import audio, fingerprint
from core.cli.demo import DEMO_CLIPS
from core.constants import SAMPLE_RATE
from core.similar import SAME_LANDMARKS, same_by_fingerprint
from tests.audio_files import write_audio

CLIPS = sorted(DEMO_CLIPS.glob("*.ogg"))
SECTIONS = 3
"""Library sections of a 15-s demo clip: three 3-s sections spread over it (0, 6 and 12 s), so an excerpt
overlaps the analysed sound only in part, as it does on a long track."""


def library_landmarks(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """(landmarks, section starts, duration) as a library track stores them."""
    sections = audio.load_segments(path, max_seconds=60.0, max_segments=SECTIONS)
    return (fingerprint.fingerprint_sections(sections.audio, sections.starts), sections.starts,
            sections.clip_seconds)


def query_landmarks(path: Path) -> np.ndarray:
    """As /similar fingerprints a query: its whole trimmed clip."""
    return fingerprint.fingerprint(audio.trim_silence(audio.decode(path, max_seconds=60.0)))


@pytest.fixture(scope="module")
def library() -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    return {p.stem: library_landmarks(p) for p in CLIPS}


def excerpt(path: Path, tmp: Path, *, start: float, seconds: float, gain: float, suffix: str) -> Path:
    y = audio.trim_silence(audio.decode(path, max_seconds=60.0))
    part = y[int(start * SAMPLE_RATE):int((start + seconds) * SAMPLE_RATE)] * gain
    return write_audio(tmp / f"{path.stem}-{start:g}{suffix}", part)


@pytest.mark.parametrize(("suffix", "gain"), [(".mp3", 1.0), (".opus", 0.25)])
def test_a_reencoded_excerpt_is_recognised(library: dict[str, tuple[np.ndarray, np.ndarray, float]],
                                           tmp_path: Path, suffix: str, gain: float) -> None:
    """6 s from 5 s: it overlaps only the section at 6-9 s of the library's three, and its frames start a
    third of a frame off the track's. (Half a frame off, the counts fall to 18-75: benchmarks/
    bench_fingerprint.py measures excerpts from random points.)"""
    for clip in CLIPS:
        query = query_landmarks(excerpt(clip, tmp_path, start=5.0, seconds=6.0, gain=gain, suffix=suffix))
        own = same_by_fingerprint(query, *library[clip.stem])
        assert own is not None and own.count >= SAME_LANDMARKS, (
            clip.stem, fingerprint.match(query, library[clip.stem][0]))
        # (no check of `own.offset`: game music loops, so a later section can hold this very audio again)
        others = [name for name, stored in library.items()
                  if name != clip.stem and same_by_fingerprint(query, *stored) is not None]
        assert others == [], clip.stem


def test_different_clips_share_no_recording(library: dict[str, tuple[np.ndarray, np.ndarray, float]]) -> None:
    """Every demo clip (three of them cues of one game, supertux) against every other clip's sections."""
    for clip in CLIPS:
        query = query_landmarks(clip)
        called = [name for name, stored in library.items() if same_by_fingerprint(query, *stored)]
        assert called == [clip.stem]
        counts = [fingerprint.match(query, lm).count
                  for name, (lm, *_) in library.items() if name != clip.stem]
        assert max(counts) < SAME_LANDMARKS  # not even the count alone


def test_a_gain_change_moves_no_landmark() -> None:
    y = audio.trim_silence(audio.decode(CLIPS[0], max_seconds=60.0))
    loud, quiet = fingerprint.fingerprint(y), fingerprint.fingerprint(y * 0.1)
    assert loud.shape[0] > 100 and np.array_equal(loud, quiet)


def test_silence_and_a_too_short_clip_have_no_landmarks() -> None:
    assert fingerprint.fingerprint(np.zeros(SAMPLE_RATE, np.float32)).shape == (0, 2)
    assert fingerprint.fingerprint(np.ones(100, np.float32)).shape == (0, 2)
    empty = np.zeros((0, 2), np.uint32)
    assert fingerprint.match(empty, empty).count == 0


def test_sections_are_placed_on_the_track_clock() -> None:
    """A section's landmarks are its own landmarks shifted by its start: the offset a query finds is where
    it starts in the track, whichever section it matched."""
    y = audio.trim_silence(audio.decode(CLIPS[1], max_seconds=60.0))
    piece = y[:3 * SAMPLE_RATE]
    alone = fingerprint.fingerprint(piece)
    placed = fingerprint.fingerprint_sections(piece[None, :], np.array([10 * fingerprint.HOP / SAMPLE_RATE]))
    assert np.array_equal(placed[:, 0], alone[:, 0]) and np.array_equal(placed[:, 1], alone[:, 1] + 10)


async def test_a_library_analysed_before_fingerprints_gains_them_at_its_next_reindex(tmp_path: Path) -> None:
    """Tracks stored without a fingerprint (as before migration 5) still answer /similar by the embedding
    rule; the next reindex re-analyses them, because the analysis version names the fingerprint, and the
    excerpt is then recognised by its fingerprint."""
    from core.config import Settings
    from core.fingerprint import FINGERPRINT_KIND
    from core.service import Service

    guild, blues = 3, DEMO_CLIPS / "lincity-city-blues.ogg"
    query = excerpt(blues, tmp_path, start=2.0, seconds=10.0, gain=1.0, suffix=".mp3")
    service = await Service.open(Settings(data_dir=tmp_path / "data", workers=1))
    try:
        assert len((await service.add_to_library(guild, [blues, DEMO_CLIPS / "etr-race1.ogg"])).added) == 2
        version = (await service.store.tracks(guild))[0].analysis_version
        assert version is not None and f"fingerprint={FINGERPRINT_KIND}" in version
        await service.store._write([("UPDATE tracks SET fingerprint = NULL, analysis_version = ?",
                                     (version.replace(f"|fingerprint={FINGERPRINT_KIND}", ""),))])
        assert all(r.fingerprint is None for r in await service.store.tracks(guild))
        before = await service.similar(guild, query, k=2)
        assert "lincity-city-blues" in before.results[0].source  # the embedding rule decides for now

        assert (await service.reindex(guild)).analysed == 2
        rows = await service.store.tracks(guild)
        assert all(r.fingerprint is not None and len(r.fingerprint) > 100 for r in rows)
        after = await service.similar(guild, query, k=2)
        assert after.same_recording is not None and "lincity-city-blues" in after.same_recording.source
        assert not after.results[1].same_recording
    finally:
        await service.close()
