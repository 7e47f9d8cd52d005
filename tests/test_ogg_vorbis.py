"""core.ogg_vorbis (FFmpeg's Vorbis decoder on our Ogg page reader) against libsndfile, on real Vorbis files.

Tolerance: FFmpeg's and libvorbis's decoders agree within 1.3e-6 on every file of both dev libraries
(measured worst 5.4e-7 on raw samples, 8.3e-7 on resampled segments), so samples are held to 2e-6 and the
positions exactly. The reference is libsndfile's whole-file decode: its seeks land off now and then.
"""
from __future__ import annotations

import itertools
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core import audio, ogg_vorbis
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


def naive_pages(data: bytes) -> tuple[list[int], list[bytes], int]:
    """(page offsets, every packet, packets that span pages) of an Ogg file, the plain way: each page's
    lacing values in order, a packet ending at each value under 255."""
    offsets: list[int] = []
    packets: list[bytes] = []
    pieces: list[bytes] = []
    spanning, at = 0, 0
    while at < len(data):
        offsets.append(at)
        lacing = data[at + 27:at + 27 + data[at + 26]]
        body = at + 27 + len(lacing)
        spanning += bool(pieces)
        for lace in lacing:
            pieces.append(data[body:body + lace])
            body += lace
            if lace < 255:
                packets.append(b"".join(pieces))
                pieces = []
        at = body
    return offsets, packets, spanning


def test_packets_built_from_any_index_are_the_files_own(tmp_path: Path) -> None:
    """A read builds the packets it decodes, from the one it starts at: from every index they are the file's
    packets, those that span pages too (a 150 kB comment header spans three: the middle one ends no
    packet)."""
    path = tmp_path / "tagged.ogg"
    y = music(20.0, sr=44_100)
    with sf.SoundFile(path, "w", samplerate=44_100, channels=1, format="OGG", subtype="VORBIS") as f:
        f.comment = "a long comment " * 10_000
        for i in range(0, y.size, 44_100):
            f.write(y[i:i + 44_100])
    data = path.read_bytes()
    _, want, spanning = naive_pages(data)
    assert len(want[1]) > 2 * 255 * 255 and spanning >= 2
    buffer = bytearray(data) + bytes(64)
    pages = ogg_vorbis._pages(buffer, len(data))
    assert pages.ended[-1] == len(want)
    assert [bytes(p) for p in ogg_vorbis._packets(buffer, pages, 0)] == want
    for first in range(len(want)):
        got = itertools.islice(ogg_vorbis._packets(buffer, pages, first), 3)
        assert [bytes(p) for p in got] == want[first:first + 3], first
    check_reads_match_libsndfile(path, [0, 5_000, 400_000, 800_000], 60_000)


@pytest.mark.parametrize("damage, error", [("capture pattern", "not an Ogg page"),
                                           ("another stream's page", "more than one logical stream"),
                                           ("cut inside a page", "a truncated Ogg page")])
def test_a_damaged_page_far_into_the_file_is_refused_at_open(stereo_ogg: Path, tmp_path: Path, damage: str,
                                                             error: str) -> None:
    """Every page's header is read at open (only the packets wait for a read), so a page damaged at 90 % of
    the file is refused before any read, as one at its start is; core.audio then asks libsndfile."""
    data = bytearray(stereo_ogg.read_bytes())
    offsets, _, _ = naive_pages(bytes(data))
    at = offsets[len(offsets) * 9 // 10]
    if damage == "capture pattern":
        data[at:at + 4] = b"OggX"
    elif damage == "another stream's page":  # a chained file: its next stream has another serial number
        data[at + 14] ^= 0xFF
    else:
        data = data[:at + 27 + data[at + 26] + 100]
    path = tmp_path / "damaged.ogg"
    path.write_bytes(bytes(data))
    with pytest.raises(VorbisUnreadable, match=error):
        OggVorbis(path)
