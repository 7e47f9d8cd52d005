"""core.fingerprint on real audio: the demo clips, fingerprinted as the library fingerprints a track (on the
sections core.audio decodes), against excerpts of them re-encoded through the bundled ffmpeg as a user's
upload would reach us (64 kb/s mp3, 48 kb/s Opus, quieter). An excerpt finds its own clip; no excerpt is
called another clip's recording."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from core import audio, fingerprint
from core.cli.demo import DEMO_CLIPS
from core.constants import SAMPLE_RATE
from core.similar import SAME_AGREEMENT, SAME_LANDMARKS, SAME_SLACK_SECONDS, same_by_fingerprint
from tests.audio_files import encode_audio, write_audio

CLIPS = sorted(DEMO_CLIPS.glob("*.ogg"))
SECTIONS = 3
"""Library sections of a 15-s demo clip: three 3-s sections spread over it (0, 6 and 12 s), so an excerpt
overlaps the analysed sound only in part, as it does on a long track."""


def library_landmarks(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """(landmarks, section starts, duration) as a library track stores them."""
    sections = audio.load_segments(path, max_seconds=60.0, max_segments=SECTIONS)
    return (fingerprint.fingerprint_sections(sections.audio, sections.starts), sections.starts,
            sections.clip_seconds)


def query_landmarks(path: Path, max_seconds: float = 60.0) -> np.ndarray:
    """As /similar fingerprints a query: its whole trimmed clip."""
    return fingerprint.fingerprint(audio.trim_silence(audio.decode(path, max_seconds=max_seconds)))


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


ENCODERS = {
    "mp3-64": ["-c:a", "libmp3lame", "-b:a", "64k"], "mp3-128": ["-c:a", "libmp3lame", "-b:a", "128k"],
    "mp3-192": ["-c:a", "libmp3lame", "-b:a", "192k"], "opus-48": ["-c:a", "libopus", "-b:a", "48k"],
    "opus-96": ["-c:a", "libopus", "-b:a", "96k"], "vorbis-q3": ["-c:a", "libvorbis", "-q:a", "3"],
    "aac-128": ["-c:a", "aac", "-b:a", "128k"],
}
"""Settings a user's copy may have been made with (ffmpeg options); the suffix names the container."""
SUFFIXES = {"mp3": ".mp3", "opus": ".opus", "vorbis": ".ogg", "aac": ".m4a"}
OTHER_FFMPEG = os.environ.get("CRATEDIGGER_TEST_OTHER_FFMPEG")
"""Another ffmpeg binary whose encoders make the copies too (the v2 rule failed on ffmpeg 7.0.2's, from
imageio-ffmpeg 0.7): not in the repository, so its cases skip unless this names one."""
BINARIES = [pytest.param(None, id="bundled"),
            pytest.param(OTHER_FFMPEG, id="other-ffmpeg", marks=pytest.mark.skipif(
                not (OTHER_FFMPEG and Path(OTHER_FFMPEG).is_file()),
                reason="no second ffmpeg binary: set CRATEDIGGER_TEST_OTHER_FFMPEG to one (e.g. "
                       "imageio-ffmpeg 0.7's ffmpeg 7.0.2) to encode the copies with its encoders too"))]


def encoded(tmp: Path, name: str, y: np.ndarray, setting: str, ffmpeg: str | None) -> Path:
    """`y` through `ffmpeg`'s encoder `setting` (ENCODERS), as a user's file."""
    return encode_audio(tmp / f"{name}-{setting}{SUFFIXES[setting.split('-')[0]]}", y, ENCODERS[setting],
                        ffmpeg=ffmpeg)


def score(seed: int, seconds: float) -> list[tuple[int, float, float, float, float]]:
    """A piece of music as notes (voice, start, length, pitch in Hz, velocity): three voices in a minor
    scale over three octaves, notes of 0.25-0.75 s."""
    rng = np.random.default_rng(seed)
    scale = 110.0 * 2.0 ** (np.array([0, 2, 3, 5, 7, 8, 10]) / 12.0)
    notes = []
    for voice in range(3):
        t = 0.0
        while t < seconds:
            length = float(rng.choice([0.25, 0.5, 0.75]))
            notes.append((voice, t, length, float(rng.choice(scale)) * 2 ** int(rng.integers(0, 3)),
                          float(rng.uniform(0.5, 1.0))))
            t += length
    return notes


def render(notes: list[tuple[int, float, float, float, float]], harmonics: list[float],
           voice_db: tuple[float, float, float], seconds: float, lag: float = 0.0) -> np.ndarray:
    """The notes played by an instrument of these harmonic amplitudes, each voice at its level (dB),
    `lag` seconds late: one render of the score."""
    y = np.zeros(int((seconds + 1.0) * SAMPLE_RATE))
    for voice, start, length, pitch, velocity in notes:
        t = np.arange(int(length * SAMPLE_RATE)) / SAMPLE_RATE
        tone = sum(a * np.sin(2 * np.pi * k * pitch * t)
                   for k, a in enumerate(harmonics, 1) if k * pitch < 5000)
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-3 * t)
        at = int((start + lag) * SAMPLE_RATE)
        y[at:at + t.size] += velocity * 10 ** (voice_db[voice] / 20) * envelope * tone
    y = y[:int(seconds * SAMPLE_RATE)]
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


@pytest.mark.parametrize("ffmpeg", BINARIES)
@pytest.mark.parametrize("setting", list(ENCODERS))
def test_the_same_piece_rendered_twice_is_not_the_same_recording(tmp_path: Path, setting: str,
                                                                 ffmpeg: str | None) -> None:
    """One score rendered twice, as drascula's track1 and track30 are (other instruments' balance, 17.6 ms
    late): the second render, through each encoder, agrees with the first's landmarks on one offset on every
    section as a copy would (the v1 rule called it the same recording), but its peaks' levels stray by 3 dB
    where a copy's stay within 0.25: not the same recording. A copy of the first render, through the same
    encoder, is."""
    notes = score(0, 15.0)
    first = render(notes, [1.0 / k for k in range(1, 9)], (0.0, 0.0, 0.0), 15.0)
    second = render(notes, [(1.0 if k % 2 else 0.3) / k for k in range(1, 9)], (0.0, -6.0, 3.0), 15.0,
                    lag=0.0176)
    landmarks, starts, duration = library_landmarks(write_audio(tmp_path / "first.ogg", first))
    query = query_landmarks(encoded(tmp_path, "second", second, setting, ffmpeg))
    found = fingerprint.match(query, landmarks)
    seen = fingerprint.evidence(query, landmarks, found, starts)
    assert found.count >= SAME_LANDMARKS and 0 < seen.agreeing >= SAME_AGREEMENT * seen.covered, seen
    assert fingerprint.within(query, found, duration, slack=SAME_SLACK_SECONDS)
    assert same_by_fingerprint(query, landmarks, starts, duration) is None, seen

    copy = query_landmarks(encoded(tmp_path, "copy", first, setting, ffmpeg))
    assert same_by_fingerprint(copy, landmarks, starts, duration) is not None


DEVLIB = Path.home() / ".cache" / "cratedigger" / "devlib" / "library"
Stored = tuple[np.ndarray, np.ndarray, float]
"""A library track's landmarks, section starts and duration."""


@pytest.fixture(scope="module")
def drascula() -> dict[str, tuple[Path, Stored]]:
    """drascula's track1 and track30: their files and their fingerprints as the library stores them."""
    if not (DEVLIB / "drascula-music--track1.ogg").is_file():
        pytest.skip("the Debian dev library is not fetched (benchmarks/fetch_devlib.py)")
    out = {}
    for name in ("track1", "track30"):
        path = DEVLIB / f"drascula-music--{name}.ogg"
        sections = audio.load_segments(path, max_seconds=900.0, max_segments=16)
        landmarks = fingerprint.fingerprint_sections(sections.audio, sections.starts)
        out[name] = (path, (landmarks, sections.starts, sections.clip_seconds))
    return out


@pytest.mark.parametrize("ffmpeg", BINARIES)
@pytest.mark.parametrize("setting", list(ENCODERS))
def test_drascula_track30_is_not_track1(drascula: dict[str, tuple[Path, Stored]], tmp_path: Path,
                                        setting: str, ffmpeg: str | None) -> None:
    """The real case: drascula's track1 and track30 are one piece rendered twice (17.6 ms apart, waveform
    correlation 0.48-0.68). Each one's middle 30 s and whole copy, made by each encoder setting, is
    recognised as itself and not as the other. (v2's single density floor called a whole copy the other
    track as well for five of these seven settings of the bundled ffmpeg 9 and six of ffmpeg 7.0.2's.)"""
    for name, (path, _) in drascula.items():
        y = audio.trim_silence(audio.decode(path, max_seconds=900.0))
        middle = y[(y.size - 30 * SAMPLE_RATE) // 2:][:30 * SAMPLE_RATE]
        for label, part in (("middle", middle), ("copy", y)):
            query = query_landmarks(encoded(tmp_path, f"{name}-{label}", part, setting, ffmpeg), 900.0)
            called = [other for other, (_, stored) in drascula.items()
                      if same_by_fingerprint(query, *stored) is not None]
            assert called == [name], (name, label, called)


def test_different_clips_share_no_recording(library: dict[str, tuple[np.ndarray, np.ndarray, float]]) -> None:
    """Every demo clip (three of them cues of one game, supertux) against every other clip's sections."""
    for clip in CLIPS:
        query = query_landmarks(clip)
        called = [name for name, stored in library.items() if same_by_fingerprint(query, *stored)]
        assert called == [clip.stem]
        counts = [fingerprint.match(query, lm).count
                  for name, (lm, *_) in library.items() if name != clip.stem]
        assert max(counts) < SAME_LANDMARKS  # not even the count alone


def test_a_gain_change_moves_no_landmark_and_every_level_by_the_gain() -> None:
    """20 dB quieter: the same hashes at the same frames, each anchor's level 40 half-decibel steps lower."""
    y = audio.trim_silence(audio.decode(CLIPS[0], max_seconds=60.0))
    loud, quiet = fingerprint.fingerprint(y), fingerprint.fingerprint(y * 0.1)
    assert loud.shape[0] > 100 and loud.shape == quiet.shape
    shift = int(round(20.0 / fingerprint.LEVEL_STEP_DB))
    assert np.array_equal(loud[:, 1], quiet[:, 1])
    assert np.array_equal(loud[:, 0] >> fingerprint.LEVEL_BITS, quiet[:, 0] >> fingerprint.LEVEL_BITS)
    assert np.array_equal(loud[:, 0].astype(np.int64) - shift, quiet[:, 0].astype(np.int64))


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


async def test_a_fingerprint_of_another_recipe_is_never_compared(tmp_path: Path) -> None:
    """A library fingerprinted by an older recipe keeps those fingerprints until its next reindex (the
    analysis version names the recipe); /similar must not compare them with a query's new one, whose keys
    mean something else. Here the stored landmarks would match (they are today's), so only the version
    decides: labelled with the old recipe they are not used, and the reindex replaces them."""
    from core.config import Settings
    from core.fingerprint import VERSION_TAG
    from core.service import Service
    from core.similar import recognised, stored_fingerprint

    guild, blues = 4, DEMO_CLIPS / "lincity-city-blues.ogg"
    query = query_landmarks(excerpt(blues, tmp_path, start=2.0, seconds=10.0, gain=1.0, suffix=".mp3"))
    service = await Service.open(Settings(data_dir=tmp_path / "data", workers=1))
    try:
        await service.add_to_library(guild, [blues, DEMO_CLIPS / "etr-race1.ogg"])
        rows = await service.store.tracks(guild)
        assert [r.source for r in rows if r.id in recognised(query, rows)] == [str(blues)]

        version = rows[0].analysis_version
        await service.store._write([("UPDATE tracks SET analysis_version = ?",
                                     (version.replace(VERSION_TAG, "fingerprint=landmark-v1"),))])
        stale = await service.store.tracks(guild)
        assert all(r.fingerprint is not None and stored_fingerprint(r) is None for r in stale)
        assert recognised(query, stale) == {}

        assert (await service.reindex(guild)).analysed == 2
        fresh = await service.store.tracks(guild)
        assert all(stored_fingerprint(r) is not None for r in fresh)
        assert [r.source for r in fresh if r.id in recognised(query, fresh)] == [str(blues)]
    finally:
        await service.close()


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("radius", [0, 1, 7, 15, 40])
def test_the_running_maximum_is_the_maximum_over_each_window(axis: int, radius: int) -> None:
    """The peak search's running maximum, which runs over the padded array as one flat line, against its
    definition: a window that crosses a row's end, or is wider than the array, reads only that row."""
    x = np.random.default_rng(radius).random((30, 33)).astype(np.float32)
    x[3, :] = 2.0  # a loud frame (row) next to quiet ones: each row's max must not leak into the next
    n = x.shape[axis]
    windows = [np.take(x, range(max(0, i - radius), min(n, i + radius + 1)), axis=axis) for i in range(n)]
    expected = np.stack([window.max(axis=axis) for window in windows], axis=axis)
    assert np.array_equal(fingerprint._running_max(x, radius, axis), expected)
