"""core.ogg_vorbis (FFmpeg's Vorbis decoder on our Ogg page reader) against libsndfile, on real Vorbis files.

Tolerance: FFmpeg's and libvorbis's decoders agree within 1.3e-6 on every file of both dev libraries
(measured worst 5.4e-7 on raw samples, 8.3e-7 on resampled segments), so samples are held to 2e-6 and the
positions exactly. The reference is libsndfile's whole-file decode: its seeks land off now and then.
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core import audio
from core.audio import decode, load_segments
from core.errors import UserError
from core.ogg_vorbis import OggVorbis, VorbisUnreadable
from tests.audio_files import write_audio
from tests.test_audio_sections import music

TOLERANCE = 2e-6


def libsndfile_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make core.audio decode as it did before core.ogg_vorbis: libsndfile, then ffmpeg."""
    monkeypatch.setattr(audio, "_decode_vorbis", lambda path, *, max_seconds: None)

    def refuse(path: Path) -> None:
        raise audio._Unreadable("off for this test")

    monkeypatch.setattr(audio, "_VorbisReader", refuse)


@pytest.fixture(scope="module")
def stereo_ogg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 100-s stereo Vorbis file at 44.1 kHz, written by libsndfile (libvorbis), left and right different."""
    path = tmp_path_factory.mktemp("ogg") / "stereo.ogg"
    left, right = music(100.0, sr=44_100, seed=1), music(100.0, sr=44_100, seed=2)
    with sf.SoundFile(path, "w", samplerate=44_100, channels=2, format="OGG", subtype="VORBIS") as f:
        for i in range(0, left.size, 44_100):  # in blocks: libsndfile crashes writing minutes at once
            f.write(np.stack([left[i:i + 44_100], right[i:i + 44_100]], axis=1))
    return path


def check_reads_match_libsndfile(path: Path, starts: list[int], count: int) -> None:
    reference = sf.read(str(path), dtype="float32", always_2d=True)[0]
    ours = OggVorbis(path)
    assert (ours.samplerate, ours.channels, ours.frames) == (sf.info(str(path)).samplerate,
                                                             reference.shape[1], reference.shape[0])
    for first in starts:
        got = ours.read(first, count)
        want = reference[first:first + count]
        assert got.shape == want.shape, (path.name, first)
        assert float(np.max(np.abs(got - want))) <= TOLERANCE, (path.name, first)


def test_reads_anywhere_equal_libsndfiles_whole_decode(stereo_ogg: Path) -> None:
    """From the start, in the middle (out of order: each read starts from a page's granule), to the end."""
    frames = sf.info(str(stereo_ogg)).frames
    rng = np.random.default_rng(0)
    starts = [0, 1, 4_000, *rng.integers(0, frames - 70_000, 30).tolist(), frames - 5_000]
    check_reads_match_libsndfile(stereo_ogg, starts, 70_000)


def test_library_tracks_read_as_libsndfile_decodes_them(shared_data: Path) -> None:
    tracks = sorted((shared_data / "library").glob("*.ogg"))[::9]
    rng = np.random.default_rng(1)
    for path in tracks:
        frames = sf.info(str(path)).frames
        check_reads_match_libsndfile(path, [0, *rng.integers(0, frames - 80_000, 8).tolist()], 80_000)


def test_sections_land_where_libsndfile_puts_them(stereo_ogg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The segments load_segments cuts with this reader are libsndfile's: same starts, same samples."""
    reads: list[int] = []
    original = OggVorbis.read
    monkeypatch.setattr(OggVorbis, "read", lambda self, first, count: reads.append(count) or original(
        self, first, count))
    ours = load_segments(stereo_ogg, max_seconds=1200, max_segments=12)
    assert 0 < sum(reads) < 0.6 * sf.info(str(stereo_ogg)).frames  # this reader, by sections
    libsndfile_only(monkeypatch)
    theirs = load_segments(stereo_ogg, max_seconds=1200, max_segments=12)
    np.testing.assert_array_equal(ours.starts, theirs.starts)
    assert ours.clip_seconds == theirs.clip_seconds
    assert float(np.max(np.abs(ours.audio - theirs.audio))) <= 1e-5


def test_library_sections_land_where_libsndfile_puts_them(shared_data: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    tracks = sorted((shared_data / "library").glob("*.ogg"))[::7]
    ours = [load_segments(path, max_seconds=1200, max_segments=24) for path in tracks]
    libsndfile_only(monkeypatch)
    for path, mine in zip(tracks, ours):
        theirs = load_segments(path, max_seconds=1200, max_segments=24)
        np.testing.assert_array_equal(mine.starts, theirs.starts, err_msg=path.name)
        assert float(np.max(np.abs(mine.audio - theirs.audio))) <= 1e-5, path.name


def _ogg_crc(page: bytes) -> int:
    """The Ogg page checksum (CRC-32, polynomial 0x04c11db7, not reflected, no final xor)."""
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def shift_granules(path: Path, by: int) -> None:
    """Add `by` to every audio page's granule position and fix the checksums: a stream that says it starts
    `by` samples in, which libsndfile reads (as an offset) and this reader declines."""
    data = bytearray(path.read_bytes())
    at = 0
    while at < len(data):
        n_segments = data[at + 26]
        size = 27 + n_segments + sum(data[at + 27:at + 27 + n_segments])
        granule = struct.unpack_from("<q", data, at + 6)[0]
        if granule > 0:
            struct.pack_into("<q", data, at + 6, granule + by)
            struct.pack_into("<I", data, at + 22, 0)
            struct.pack_into("<I", data, at + 22, _ogg_crc(bytes(data[at:at + size])))
        at += size
    path.write_bytes(bytes(data))


def test_a_stream_whose_granules_disagree_falls_back_to_libsndfile(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_audio(tmp_path / "offset.ogg", music(60.0, sr=44_100), sr=44_100)
    shift_granules(path, 104)
    with pytest.raises(VorbisUnreadable, match="decoded where the stream says"):
        OggVorbis(path).read(0, 50_000)
    got = load_segments(path, max_seconds=1200, max_segments=8)
    whole = decode(path, max_seconds=1200)
    libsndfile_only(monkeypatch)
    want = load_segments(path, max_seconds=1200, max_segments=8)
    np.testing.assert_array_equal(got.starts, want.starts)
    np.testing.assert_array_equal(got.audio, want.audio)
    np.testing.assert_array_equal(whole, decode(path, max_seconds=1200))


def test_without_pyav_vorbis_is_read_by_libsndfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_audio(tmp_path / "long.ogg", music(60.0, sr=44_100), sr=44_100)
    with_pyav = load_segments(path, max_seconds=1200, max_segments=8)
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError, as when not installed
    with pytest.raises(VorbisUnreadable, match="PyAV"):
        OggVorbis(path)
    without = load_segments(path, max_seconds=1200, max_segments=8)
    np.testing.assert_array_equal(with_pyav.starts, without.starts)
    assert float(np.max(np.abs(with_pyav.audio - without.audio))) <= 1e-5


@pytest.mark.parametrize("damage", ["header", "truncated page", "garbage audio"])
def test_a_corrupt_ogg_gets_a_friendly_error_or_libsndfiles_reading(tmp_path: Path, damage: str) -> None:
    """This reader declines (VorbisUnreadable) and the file ends as libsndfile and ffmpeg end it: a one-line
    UserError, or segments."""
    path = write_audio(tmp_path / "long.ogg", music(40.0, sr=44_100), sr=44_100)
    data = path.read_bytes()
    noise = np.random.default_rng(3).integers(0, 256, len(data), np.uint8).tobytes()
    path.write_bytes({"header": data[:40] + noise[40:],
                      "truncated page": data[:len(data) // 2 + 7],
                      "garbage audio": data[:6000] + noise[6000:]}[damage])
    with pytest.raises(VorbisUnreadable):
        OggVorbis(path).read(0, 44_100)
    try:
        segments = load_segments(path, max_seconds=1200, max_segments=4)
    except UserError as exc:
        assert "\n" not in str(exc) and path.name in str(exc)
    else:
        assert len(segments) > 0 and np.all(np.isfinite(segments.audio))


def test_not_an_ogg_file_is_declined_before_it_is_read(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "tone.flac", music(5.0))
    with pytest.raises(VorbisUnreadable, match="not an Ogg file"):
        OggVorbis(path)
