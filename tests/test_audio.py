"""core.audio on real files of every supported format, and every kind of bad input."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.audio import _mix_down, decode, decode_bytes, load_segments, segment, trim_silence
from core.constants import SAMPLE_RATE, SEGMENT_SAMPLES
from core.errors import EmptyAudio, FileMissing, TooLong, UnsupportedAudio
from tests.audio_files import write_audio
from tests.conftest import synth_tone

FORMATS = [".wav", ".flac", ".ogg", ".au", ".mp3", ".m4a", ".opus"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_decodes_every_format_to_mono_22050(tmp_path: Path, suffix: str) -> None:
    y = synth_tone(4.0, sr=44_100)
    stereo_ok = write_audio(tmp_path / f"clip{suffix}", y, sr=44_100)
    out = decode(stereo_ok, max_seconds=60)
    assert out.dtype == np.float32 and out.ndim == 1
    # codecs pad or trim a few ms; the length must still be 4 s at 22 050 Hz
    assert abs(out.size / SAMPLE_RATE - 4.0) < 0.1
    assert 0.1 < np.max(np.abs(out)) < 1.0


def test_stereo_is_mixed_down(tmp_path: Path) -> None:
    left = synth_tone(2.0, freq=220)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, -left], axis=1), SAMPLE_RATE)  # opposite phase cancels in the mix
    assert np.max(np.abs(decode(path, max_seconds=60))) < 1e-3


@pytest.mark.parametrize("channels", [1, 2, 6, 12])
def test_mix_down_is_the_channels_mean(channels: int) -> None:
    data = np.random.default_rng(channels).standard_normal((10_000, channels)).astype(np.float32)
    mono = _mix_down(data)
    assert mono.dtype == np.float32 and mono.shape == (10_000,)
    if channels < 8:  # what decode gave before, bit for bit
        np.testing.assert_array_equal(mono, data.mean(axis=1, dtype=np.float32))
    np.testing.assert_allclose(mono, data.mean(axis=1, dtype=np.float64), rtol=0, atol=1e-6)


def test_upload_bytes_decode_like_files(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "a.flac", synth_tone(3.0))
    assert np.allclose(decode_bytes(path.read_bytes(), "song.FLAC", max_seconds=60), decode(path, max_seconds=60))


def test_segment_policy() -> None:
    y = np.ones(int(2.6 * SEGMENT_SAMPLES), dtype=np.float32)
    segs = segment(y, max_segments=10)
    assert len(segs) == 3  # 2 full + a 60 % tail, kept
    assert segs.audio.shape == (3, SEGMENT_SAMPLES)
    assert len(segment(np.ones(int(2.3 * SEGMENT_SAMPLES), dtype=np.float32), max_segments=10)) == 2  # 30 % tail dropped
    short = segment(np.arange(SEGMENT_SAMPLES // 3, dtype=np.float32), max_segments=10)
    assert len(short) == 1 and short.audio[0, SEGMENT_SAMPLES // 3] == 0.0  # repeated, not zero padded
    assert short.audio[0, SEGMENT_SAMPLES // 3 + 1] == 1.0
    wide = np.random.default_rng(0).standard_normal(2 * SEGMENT_SAMPLES + 10)  # float64 pieces: rounded
    rows = segment(wide, max_segments=10).audio
    assert rows.dtype == np.float32 and np.array_equal(rows, wide[:2 * SEGMENT_SAMPLES].astype(np.float32)
                                                       .reshape(2, SEGMENT_SAMPLES))


def test_long_clip_segments_are_spread_over_the_whole_clip() -> None:
    y = np.zeros(100 * SEGMENT_SAMPLES, dtype=np.float32)
    segs = segment(y, max_segments=10)
    assert len(segs) == 10
    assert segs.starts[0] == 0.0 and segs.starts[-1] == pytest.approx(99 * SEGMENT_SAMPLES / SAMPLE_RATE)


def test_trim_silence_removes_lead_and_tail() -> None:
    tone = synth_tone(2.0)
    y = np.concatenate([np.zeros(SAMPLE_RATE), tone, np.zeros(2 * SAMPLE_RATE)]).astype(np.float32)
    assert abs(trim_silence(y).size / SAMPLE_RATE - 2.0) < 0.1


# -- bad input: each a typed error with a one-line message -----------------------------------------------
def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


def test_corrupt_bytes(tmp_path: Path) -> None:
    path = tmp_path / "broken.ogg"
    path.write_bytes(b"OggS" + bytes(range(256)) * 40)
    with pytest.raises(UnsupportedAudio) as err:
        decode(path, max_seconds=60)
    assert "broken.ogg" in _one_line(err)


def test_text_renamed_mp3(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp3"
    path.write_text("these are my shopping notes, not a song\n" * 50)
    with pytest.raises(UnsupportedAudio) as err:
        decode(path, max_seconds=60)
    _one_line(err)


def test_png_renamed_wav(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = tmp_path / "picture.wav"
    fig = plt.figure(figsize=(1, 1))
    fig.savefig(path, format="png")
    plt.close(fig)
    with pytest.raises(UnsupportedAudio):
        decode(path, max_seconds=60)


def test_zero_length_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.touch()
    with pytest.raises(EmptyAudio) as err:
        decode(path, max_seconds=60)
    assert "empty" in _one_line(err)


def test_pure_silence(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(5 * SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(EmptyAudio) as err:
        load_segments(path, max_seconds=60, max_segments=10)
    assert "silent" in _one_line(err)


def test_two_hour_file_is_refused_without_decoding_it(tmp_path: Path) -> None:
    """Refused from what the header says: the file is cut after its first 8 kB, so its header still says two
    hours but it holds a few seconds of samples at most; decoding them could never find it too long."""
    path = tmp_path / "two-hours.flac"
    with sf.SoundFile(path, "w", samplerate=8000, channels=1, format="FLAC") as f:
        block = np.zeros(8000 * 60, dtype=np.float32)
        for _ in range(120):
            f.write(block)
    os.truncate(path, 8192)
    with pytest.raises(TooLong) as err:
        decode(path, max_seconds=1200)
    assert "20 minutes" in _one_line(err)


def test_long_compressed_file_stops_decoding_at_the_cap(tmp_path: Path) -> None:
    y = np.tile(synth_tone(1.0), 150)  # 2.5 min of mp3, decoded by ffmpeg
    path = write_audio(tmp_path / "long.mp3", y)
    with pytest.raises(TooLong):
        decode(path, max_seconds=60)


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "song.xyz"
    sf.write(path, synth_tone(2.0), SAMPLE_RATE, format="WAV")
    with pytest.raises(UnsupportedAudio) as err:
        decode(path, max_seconds=60)
    assert ".xyz" in _one_line(err)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileMissing) as err:
        decode(tmp_path / "nowhere.wav", max_seconds=60)
    _one_line(err)


def test_clip_under_one_second_of_sound(tmp_path: Path) -> None:
    path = tmp_path / "blip.wav"
    sf.write(path, synth_tone(0.4), SAMPLE_RATE)
    with pytest.raises(EmptyAudio):
        load_segments(path, max_seconds=60, max_segments=10)


def test_zip_archive_renamed_as_audio(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "album.m4a"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("song.wav", b"RIFF" + bytes(1000))
    with pytest.raises(UnsupportedAudio):
        decode(path, max_seconds=60)


def test_decompression_bomb_is_refused_after_bounded_work(tmp_path: Path) -> None:
    """A small file that would decode to three hours (950 MB of float32 at our rate)."""
    path = tmp_path / "bomb.flac"
    with sf.SoundFile(path, "w", samplerate=8_000, channels=1, format="FLAC") as f:
        block = np.zeros(8_000 * 600, dtype=np.float32)
        for _ in range(18):
            f.write(block)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(TooLong):
        decode(path, max_seconds=1200)
