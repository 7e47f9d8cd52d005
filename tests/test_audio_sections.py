"""load_segments decoding only the sections it analyses, against the whole-file path it replaces.

The whole-file path is `segment(trim_silence(decode(path)))`, what load_segments did before. Agreement
measured by benchmarks/bench_decode.py (68 library tracks, 10/20/40 segments; 4 re-encodings of the
longest):
- FLAC, WAV, mp3 (libsndfile seeks exactly): the same positions and segments, to 1e-5 (soxr resampling a
  span instead of the whole file differs by about 5e-7);
- Ogg Vorbis (core.ogg_vorbis, placed by the pages' granules): the same positions and segments, to 1e-5
  (libsndfile, which reads Vorbis when that reader declines, put 4 of 3979 segments 1 sample off: its issue
  #885, its Vorbis seek sometimes lands off, by up to a lapped block on synthetic files);
- Opus (ffmpeg's Ogg seek): shifted by 1 sample in a third of the segments, once by 224;
- m4a (ffmpeg): a seeking read starts up to one AAC frame late but ends where asked, so it is placed by its
  end; segments at most 224 samples off, log-mel correlation with the whole decode >= 0.988.
- Trim: against the loudest frame decoded, not the file's loudest, so a fade can keep a little more: 65 of
  68 library tracks have the same trim; the others keep 23-93 ms more, one (10 segments) 2 s of lead-in.
"""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from core import audio
from core.audio import Segments, decode, ffmpeg_exe, load_segments, segment, trim_silence
from core.constants import SAMPLE_RATE, SEGMENT_SAMPLES
from core.errors import EmptyAudio, TooLong, UnsupportedAudio, UserError
from core.ogg_vorbis import OggVorbis
from tests.audio_files import write_audio
from tests.conftest import synth_tone

DEVLIB = Path.home() / ".cache" / "cratedigger" / "devlib" / "library"
EXACT_FORMATS = [".flac", ".wav", ".mp3", ".ogg"]
BLOCK_ACCURATE_FORMATS = [".opus", ".m4a"]
MAX_SHIFT = 1024
"""Samples at SAMPLE_RATE a block-accurate seek may land away from the whole-file decode's position."""


def music(seconds: float, *, sr: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A new pitch every second over a noise floor: every 3-s span differs from every other, and a shifted
    span does not correlate with the unshifted one (so a lag can be measured)."""
    rng = np.random.default_rng(seed)
    pitches = rng.uniform(110, 880, int(seconds))
    y = np.concatenate([synth_tone(1.0, freq=float(f), sr=sr, seed=i) for i, f in enumerate(pitches)])
    return (y + 0.05 * rng.standard_normal(y.size)).astype(np.float32)


def whole_file(path: Path, *, max_segments: int) -> tuple[np.ndarray, Segments]:
    """(trimmed clip, segments) of the whole-file path."""
    clip = trim_silence(decode(path, max_seconds=1200), name=path.name)
    return clip, segment(clip, max_segments=max_segments)


@pytest.fixture
def frames_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Source frames decoded through libsndfile's SoundFile.read or core.ogg_vorbis's OggVorbis.read, call
    by call."""
    counts: list[int] = []
    for owner in (sf.SoundFile, OggVorbis):
        original = owner.read

        def read(self: object, *args: object, _original: Any = original, **kwargs: object) -> np.ndarray:
            data = _original(self, *args, **kwargs)
            counts.append(len(data))
            return data

        monkeypatch.setattr(owner, "read", read)
    yield counts


def shift(piece: np.ndarray, clip: np.ndarray, at: int) -> tuple[int, float]:
    """(lag, correlation) of `piece` against `clip` around sample `at`: where it matches best."""
    lo = max(0, at - 2 * MAX_SHIFT)
    context = clip[lo:at + piece.size + 2 * MAX_SHIFT]
    n = context.size + piece.size
    scores = np.fft.irfft(np.fft.rfft(context, n) * np.conj(np.fft.rfft(piece, n)), n)
    best = int(np.argmax(scores[:context.size - piece.size + 1]))  # lags at which piece lies inside context
    return lo + best - at, float(np.corrcoef(context[best:best + piece.size], piece)[0, 1])


def test_trim_frames_of_decoded_parts_are_those_of_the_whole_signal() -> None:
    """The sections path finds the trim on parts of the file: their RMS frames (zero-padded only at the
    file's ends) must be librosa's frames of the whole signal, and its rule librosa.effects.trim's."""
    import librosa

    y = np.concatenate([np.zeros(3000), music(10.0), np.full(5000, 1e-4)]).astype(np.float32)
    frames = librosa.feature.rms(y=y, frame_length=2048, hop_length=512)[0]
    for start, stop in [(0, y.size), (0, 70_001), (12_345, 99_999), (100_000, y.size)]:
        chunk = audio._Chunk.of(start, y[start:stop], total=y.size)
        assert chunk.rms.size > 100 and chunk.first_frame * 512 - 1024 >= (start if start else -1024)
        np.testing.assert_allclose(chunk.rms, frames[chunk.first_frame:chunk.first_frame + chunk.rms.size],
                                   rtol=1e-6)
    sound = audio._Chunk.of(0, y, total=y.size).sounding(float(frames.max()))
    _, (start, stop) = librosa.effects.trim(y, top_db=60, frame_length=2048, hop_length=512)
    assert (sound[0] * 512, min(y.size, (sound[-1] + 1) * 512)) == (start, stop) != (0, y.size)


@pytest.mark.parametrize("suffix", EXACT_FORMATS)
def test_sections_of_a_long_file_equal_the_whole_file_segments(tmp_path: Path, suffix: str,
                                                               frames_read: list[int]) -> None:
    sr = SAMPLE_RATE if suffix == ".wav" else 44_100  # .wav: no resampling at all
    path = write_audio(tmp_path / f"long{suffix}", music(90.0, sr=sr), sr=sr)
    sections = load_segments(path, max_seconds=1200, max_segments=10)
    assert sum(frames_read) < 0.6 * sf.info(str(path)).frames  # it did decode by sections
    _, whole = whole_file(path, max_segments=10)
    assert len(sections) == len(whole) == 10
    np.testing.assert_array_equal(sections.starts, whole.starts)
    assert sections.clip_seconds == whole.clip_seconds
    assert sections.audio.dtype == np.float32 and sections.audio.shape == (10, SEGMENT_SAMPLES)
    assert float(np.max(np.abs(sections.audio - whole.audio))) <= (0.0 if suffix == ".wav" else 1e-5)


@pytest.mark.parametrize("suffix", BLOCK_ACCURATE_FORMATS)
def test_sections_land_within_a_block_of_the_whole_file_segments(tmp_path: Path, suffix: str) -> None:
    path = write_audio(tmp_path / f"long{suffix}", music(90.0, sr=44_100), sr=44_100)
    sections = load_segments(path, max_seconds=1200, max_segments=10)
    clip, whole = whole_file(path, max_segments=10)
    np.testing.assert_array_equal(sections.starts, whole.starts)
    assert abs(sections.clip_seconds - whole.clip_seconds) <= MAX_SHIFT / SAMPLE_RATE
    for piece, start in zip(sections.audio[:-1], sections.starts[:-1]):  # the last may be a repeated tail
        lag, correlation = shift(piece, clip, round(start * SAMPLE_RATE))
        assert abs(lag) <= MAX_SHIFT and correlation > 0.99, (start, lag, correlation)


def test_sections_decode_a_small_fraction_of_a_long_file(tmp_path: Path, frames_read: list[int]) -> None:
    path = write_audio(tmp_path / "six-minutes.flac", music(360.0, sr=44_100), sr=44_100)
    segments = load_segments(path, max_seconds=1200, max_segments=20)
    assert len(segments) == 20 and segments.clip_seconds == pytest.approx(360.0, abs=0.1)
    # 20 spans of 3 s + 2 x 46 ms margins, and 4 s at each end: 70 s of 360
    assert sum(frames_read) <= 0.2 * 360 * 44_100
    assert max(frames_read) < 5 * 44_100  # never one long read


def test_ffmpeg_sections_ask_ffmpeg_for_a_small_fraction(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_audio(tmp_path / "four-minutes.opus", music(240.0, sr=48_000), sr=48_000)
    commands: list[list[str]] = []
    run = subprocess.run

    def recording(cmd: list[str], *args: object, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        commands.append(cmd)
        return run(cmd, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(audio.subprocess, "run", recording)
    segments = load_segments(path, max_seconds=1200, max_segments=10)
    assert len(segments) == 10
    lengths = [float(cmd[i + 1]) for cmd in commands[1:] for i, arg in enumerate(cmd) if arg == "-t"]
    assert len(lengths) == sum(arg == "-i" for cmd in commands[1:] for arg in cmd)  # every read is bounded
    asked = sum(lengths)
    # the tail read asks for 2 s past the end (and stops at it): 4 + 2 + 4 s of ends and 10 spans of 3.1 s
    assert asked <= 0.2 * 240


@pytest.mark.parametrize(("seconds", "max_segments"), [(60.0, 40), (20.0, 10), (2.0, 10)])
def test_short_clips_are_decoded_whole_exactly_as_before(tmp_path: Path, seconds: float,
                                                         max_segments: int) -> None:
    """When the segments would cover most of the clip, the whole-file path runs: bit-identical output."""
    path = write_audio(tmp_path / "clip.flac", music(seconds, sr=44_100), sr=44_100)
    sections = load_segments(path, max_seconds=1200, max_segments=max_segments)
    _, whole = whole_file(path, max_segments=max_segments)
    np.testing.assert_array_equal(sections.audio, whole.audio)
    np.testing.assert_array_equal(sections.starts, whole.starts)
    assert sections.clip_seconds == whole.clip_seconds


def test_silence_at_both_ends_is_trimmed_as_the_whole_file_path_does(tmp_path: Path) -> None:
    """6 s of digital silence (longer than the first probe of each end) and 1 s of -90 dB hiss before the
    music; a 5-s fade to silence and 7 s of it after."""
    rng = np.random.default_rng(1)
    body = music(80.0, sr=44_100)
    body[-5 * 44_100:] *= np.linspace(1.0, 0.0, 5 * 44_100, dtype=np.float32)
    y = np.concatenate([np.zeros(6 * 44_100), 3e-5 * rng.standard_normal(44_100), body,
                        np.zeros(7 * 44_100)]).astype(np.float32)
    path = write_audio(tmp_path / "quiet-ends.flac", y, sr=44_100)
    sections = load_segments(path, max_seconds=1200, max_segments=10)
    _, whole = whole_file(path, max_segments=10)
    assert whole.clip_seconds == pytest.approx(80.0, abs=0.1)
    assert sections.clip_seconds == whole.clip_seconds
    np.testing.assert_array_equal(sections.starts, whole.starts)
    assert float(np.max(np.abs(sections.audio - whole.audio))) <= 1e-5


def test_sound_only_in_the_middle_falls_back_to_the_whole_file(tmp_path: Path) -> None:
    """No sound in the first or last quarter: the sections path gives up and the whole-file path answers."""
    y = np.concatenate([np.zeros(40 * SAMPLE_RATE), music(30.0), np.zeros(40 * SAMPLE_RATE)])
    path = write_audio(tmp_path / "island.flac", y.astype(np.float32))
    sections = load_segments(path, max_seconds=1200, max_segments=4)
    _, whole = whole_file(path, max_segments=4)
    np.testing.assert_array_equal(sections.audio, whole.audio)
    assert sections.clip_seconds == whole.clip_seconds == pytest.approx(30.0, abs=0.1)


def test_a_long_silent_file_is_refused_as_silent(tmp_path: Path) -> None:
    path = tmp_path / "silence.flac"
    sf.write(path, np.zeros(200 * SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(EmptyAudio, match="silent"):
        load_segments(path, max_seconds=1200, max_segments=10)


def test_a_long_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "long.flac", music(90.0))
    with pytest.raises(TooLong):
        load_segments(path, max_seconds=60, max_segments=10)


def test_a_header_claiming_twice_the_length_changes_nothing(tmp_path: Path) -> None:
    """FLAC's STREAMINFO says how many samples follow; doubled, the sections path reads short at the far
    end, gives up, and the whole-file path answers as before."""
    path = write_audio(tmp_path / "liar.flac", music(60.0))
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC"
    field = int.from_bytes(data[18:26], "big")  # 20 bits rate, 3 channels, 5 bits per sample, 36 samples
    samples = field & (2**36 - 1)
    data[18:26] = ((field & ~(2**36 - 1)) | (2 * samples)).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    assert sf.info(str(path)).frames == 2 * samples
    sections = load_segments(path, max_seconds=1200, max_segments=10)
    _, whole = whole_file(path, max_segments=10)
    np.testing.assert_array_equal(sections.audio, whole.audio)


@pytest.mark.parametrize("cut_bytes, by_sections", [(2_000, True), (20_000, False)])
def test_an_mp3_whose_header_counts_a_little_too_long(tmp_path: Path, frames_read: list[int], cut_bytes: int,
                                                      by_sections: bool) -> None:
    """libsndfile takes an mp3's length from its header (LAME's frame count), and its whole-file read stops
    where the frames do. Cut 0.25 s short, the read to the end finds the real end and the sections are the
    whole-file segments (3 mp3s of the Debian dev library count 0.25-0.38 s too many and were decoded
    whole); cut 2.5 s short, past the 1 s the sections path allows, the whole file is decoded as before."""
    path = write_audio(tmp_path / "cut.mp3", music(90.0, sr=44_100), sr=44_100)
    path.write_bytes(path.read_bytes()[:-cut_bytes])
    _, whole = whole_file(path, max_segments=10)
    real = sf.read(str(path), dtype="float32")[0].shape[0]  # what the whole-file decode reads
    assert sf.info(str(path)).frames - real > (0.2 if by_sections else 2.0) * 44_100
    frames_read.clear()
    sections = load_segments(path, max_seconds=1200, max_segments=10)
    assert (sum(frames_read) < 0.6 * real) == by_sections
    np.testing.assert_array_equal(sections.starts, whole.starts)
    assert sections.clip_seconds == whole.clip_seconds
    assert float(np.max(np.abs(sections.audio - whole.audio))) <= 1e-5


@pytest.mark.skipif(not DEVLIB.is_dir(),
                    reason="the Debian dev library is not fetched (benchmarks/fetch_devlib.py)")
@pytest.mark.parametrize("name", ["asc-music--frontiers.mp3", "hyperrogue-music--hr-savino-caribbean.ogg"])
def test_debian_files_whose_header_counts_too_long_are_read_by_sections(name: str,
                                                                        frames_read: list[int]) -> None:
    """The real cases: an mp3 whose LAME header counts 8 359 frames too many, and a Vorbis file whose first
    page trims 104 samples from its start (core.ogg_vorbis declines it; libsndfile counts them in its length
    but does not read them). Same starts, trim and samples (to 1e-5) as the whole-file decode."""
    path = DEVLIB / name
    real = sf.read(str(path), dtype="float32")[0].shape[0]
    assert sf.info(str(path)).frames > real
    _, whole = whole_file(path, max_segments=16)
    frames_read.clear()
    sections = load_segments(path, max_seconds=1200, max_segments=16)
    assert sum(frames_read) < real  # by sections: the whole-file path reads it all after trying them
    np.testing.assert_array_equal(sections.starts, whole.starts)
    assert sections.clip_seconds == whole.clip_seconds
    assert float(np.max(np.abs(sections.audio - whole.audio))) <= 1e-5


def test_metadata_cannot_fake_the_duration_ffmpeg_reports(tmp_path: Path) -> None:
    """A tag holding a line that looks like ffmpeg's own duration line is printed indented, and ignored."""
    clean = write_audio(tmp_path / "clean.m4a", music(60.0))
    path = tmp_path / "tagged.m4a"
    fake = "x\n  Duration: 00:00:09.00, start: 0.000000, bitrate: 1 kb/s"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(clean), "-c", "copy", "-metadata",
                    f"title={fake}", str(path)], check=True)
    segments = load_segments(path, max_seconds=1200, max_segments=10)
    assert len(segments) == 10 and segments.clip_seconds == pytest.approx(60.0, abs=0.1)


@pytest.mark.parametrize("suffix", [".mp3", ".m4a"])
def test_a_long_file_with_a_garbage_body_is_unsupported(tmp_path: Path, suffix: str) -> None:
    path = write_audio(tmp_path / f"long{suffix}", music(100.0))
    data = path.read_bytes()
    noise = np.random.default_rng(0).integers(0, 256, len(data) - 8192, np.uint8).tobytes()
    path.write_bytes(data[:8192] + noise)
    with pytest.raises(UnsupportedAudio) as err:
        load_segments(path, max_seconds=1200, max_segments=4)
    assert path.name in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("suffix", [".ogg", ".flac", ".opus", ".m4a", ".mp3", ".wav"])
@pytest.mark.parametrize("damage", ["body", "middle", "second half"])
def test_damaged_long_files_end_as_the_whole_file_path_ends(tmp_path: Path, suffix: str, damage: str) -> None:
    """Garbage after the first 8 KiB, garbage in the middle third, or the second half cut off: the same
    outcome as the whole-file path (the same error, or segments)."""
    path = write_audio(tmp_path / f"long{suffix}", music(40.0))
    data = path.read_bytes()
    noise = np.random.default_rng(2).integers(0, 256, len(data), np.uint8).tobytes()
    third = len(data) // 3
    damaged = {"body": data[:8192] + noise[8192:],
               "middle": data[:third] + noise[third:2 * third] + data[2 * third:],
               "second half": data[:len(data) // 2]}[damage]
    path.write_bytes(damaged)

    def outcome(fn: object) -> str:
        try:
            result = fn()  # type: ignore[operator]
        except UserError as exc:
            return type(exc).__name__
        return f"{type(result).__name__}"

    assert outcome(lambda: load_segments(path, max_seconds=1200, max_segments=4)) == \
        outcome(lambda: whole_file(path, max_segments=4)[1])


def test_library_tracks_by_sections_agree_with_the_whole_file(shared_data: Path,
                                                              frames_read: list[int]) -> None:
    """The six longest library tracks (Ogg Vorbis, 3.5 to 6.5 min), 20 segments each."""
    tracks = sorted((shared_data / "library").glob("*.ogg"), key=lambda p: sf.info(str(p)).frames)[-6:]
    same_positions = 0
    for path in tracks:
        frames_read.clear()
        sections = load_segments(path, max_seconds=1200, max_segments=20)
        assert sum(frames_read) < 0.5 * sf.info(str(path)).frames
        clip, whole = whole_file(path, max_segments=20)
        assert len(sections) == len(whole) == 20
        assert abs(sections.clip_seconds - whole.clip_seconds) < 0.1  # a fade may keep a few frames more
        if not np.array_equal(sections.starts, whole.starts):
            continue
        same_positions += 1
        for i, (piece, start) in enumerate(zip(sections.audio[:-1], sections.starts[:-1])):
            if float(np.max(np.abs(piece - whole.audio[i]))) > 1e-5:
                lag, correlation = shift(piece, clip, round(start * SAMPLE_RATE))
                assert abs(lag) <= MAX_SHIFT and correlation > 0.99, (path.name, start, lag, correlation)
    assert same_positions >= 5
