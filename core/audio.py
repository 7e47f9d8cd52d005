"""Decode any common audio file to mono float32 at 22 050 Hz, trim silence and cut 3-s segments.

Decoding tries, in turn: Ogg Vorbis with core.ogg_vorbis (FFmpeg's Vorbis decoder in-process on our own Ogg
page reader: 0.6-0.8 of libsndfile's CPU, the same samples to 1e-6); libsndfile (fast, in-process, knows its
length before reading: faster than PyAV on WAV, FLAC and MP3); and the ffmpeg binary bundled by imageio-ffmpeg
for everything else (m4a/aac, webm, wma, the Opus files libsndfile
stumbles on...). ffmpeg is told to stop one second past the duration cap, so an hour-long file or a
decompression bomb costs at most that much decoding before it is refused.

`load_segments` decodes only what it analyses when that is a small part of the file: its two ends (to find
the silence to trim) and the segments' spans, found by seeking (see `_sections`).
"""
from __future__ import annotations

import logging
import math
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from core import dsp
from core.constants import (
    MIN_CLIP_SECONDS,
    MIN_SEGMENT_FRACTION,
    SAMPLE_RATE,
    SEGMENT_SAMPLES,
    SILENCE_TOP_DB,
    TRIM_FRAME_LENGTH,
    TRIM_HOP_LENGTH,
)
from core.errors import EmptyAudio, FileMissing, TooLong, UnsupportedAudio
from core.native_stderr import quiet
from core.ogg_vorbis import OggVorbis, VorbisUnreadable

if TYPE_CHECKING:
    import soundfile

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".mp4", ".au", ".snd",
     ".aif", ".aiff", ".webm", ".mka", ".wma"}
)
SILENT_PEAK = 10 ** (-80 / 20)
"""Peak amplitude below -80 dBFS counts as digital silence."""

FFMPEG_TIMEOUT_SECONDS = 120.0
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 64
"""Headers past these are refused as unusual rather than decoded."""


@dataclass(frozen=True)
class Segments:
    """Fixed-length segments of one clip: `audio` is (n, SEGMENT_SAMPLES) float32 at SAMPLE_RATE, `starts`
    (n,) in seconds from the start of the trimmed clip, `clip_seconds` the trimmed clip's length."""

    audio: np.ndarray
    starts: np.ndarray
    clip_seconds: float

    def __len__(self) -> int:
        return int(self.audio.shape[0])


def supported_extensions_text() -> str:
    return ", ".join(sorted(ext.lstrip(".") for ext in AUDIO_EXTENSIONS))


def check_extension(name: str) -> None:
    suffix = Path(name).suffix.lower()
    if suffix not in AUDIO_EXTENSIONS:
        shown = suffix or "no extension"
        raise UnsupportedAudio(
            f"'{Path(name).name}' has {shown}, which is not an audio format we read "
            f"(send one of: {supported_extensions_text()})."
        )


def _check_file(path: Path) -> None:
    """Refuse what is not worth opening: no such file, an extension we do not read, zero bytes."""
    if not path.is_file():
        raise FileMissing(f"no such file: {path}")
    check_extension(path.name)
    if path.stat().st_size == 0:
        raise EmptyAudio(f"'{path.name}' is empty (0 bytes).")


@quiet
def decode(path: str | Path, *, max_seconds: float) -> np.ndarray:
    """Decode `path` to mono float32 at SAMPLE_RATE. Raises a typed `UserError` for anything unusable."""
    path = Path(path)
    _check_file(path)
    y = _decode_vorbis(path, max_seconds=max_seconds)
    if y is None:
        y = _decode_soundfile(path, max_seconds=max_seconds)
    if y is None:
        y = _decode_ffmpeg(path, max_seconds=max_seconds)
    if y.size == 0:
        raise EmptyAudio(f"'{path.name}' holds no audio samples.")
    if not np.all(np.isfinite(y)):
        raise UnsupportedAudio(f"'{path.name}' decodes to invalid samples (NaN or infinity).")
    return y


def decode_bytes(data: bytes, filename: str, *, max_seconds: float) -> np.ndarray:
    """Decode an upload held in memory; the name only tells us the format."""
    check_extension(filename)
    if not data:
        raise EmptyAudio(f"'{filename}' is empty (0 bytes).")
    with tempfile.TemporaryDirectory(prefix="cratedigger-") as tmp:
        path = Path(tmp) / ("upload" + Path(filename).suffix.lower())
        path.write_bytes(data)
        return decode(path, max_seconds=max_seconds)


def _too_long(name: str, max_seconds: float) -> TooLong:
    return TooLong(f"'{name}' is longer than {max_seconds / 60:g} minutes; send a shorter clip.")


def _check_header(name: str, samplerate: int, channels: int, frames: int, *, max_seconds: float) -> None:
    """Refuse a file its header says is too long or has an unusual format, before decoding it."""
    if frames > (max_seconds + 1) * samplerate:
        raise _too_long(name, max_seconds)
    if samplerate > MAX_SAMPLE_RATE or channels > MAX_CHANNELS:
        raise UnsupportedAudio(f"'{name}' has an unusual format ({samplerate} Hz, "
                               f"{channels} channels) that we do not analyse.")


def _decode_vorbis(path: Path, *, max_seconds: float) -> np.ndarray | None:
    """Decode an Ogg Vorbis file with core.ogg_vorbis (half libsndfile's CPU), or None for anything that
    reader does not promise to read as libsndfile would (libsndfile gets a try)."""
    try:
        reader = OggVorbis(path)
        if reader.samplerate <= 0 or reader.channels <= 0:
            return None
        _check_header(path.name, reader.samplerate, reader.channels, reader.frames, max_seconds=max_seconds)
        data = reader.read(0, reader.frames)
    except VorbisUnreadable as exc:
        log.debug("%s: %s; trying libsndfile", path.name, exc)
        return None
    return _resample(_mix_down(data), reader.samplerate)


def _decode_soundfile(path: Path, *, max_seconds: float) -> np.ndarray | None:
    """Decode with libsndfile, or None when it does not know the format (ffmpeg gets a try)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None
    if info.samplerate <= 0 or info.channels <= 0:
        return None
    _check_header(path.name, info.samplerate, info.channels, info.frames, max_seconds=max_seconds)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        log.debug("libsndfile failed on %s: %s", path, exc)
        return None
    return _resample(_mix_down(data), sr)


def _mix_down(data: np.ndarray) -> np.ndarray:
    """(frames, channels) float32 → (frames,) float32, the channels' mean.

    What data.mean(axis=1, dtype=np.float32) gives, bit for bit below 8 channels (numpy sums so few in
    order, as here), 8x faster on stereo: numpy reduces a 2-long axis frame by frame. Beyond 8 channels
    numpy sums pairwise and the two may differ by a rounding. The first two channels are added into a new
    array (no copy of the first): 0.10 against 0.18 ms for 3.2 s of stereo at 44.1 kHz.
    """
    if data.shape[1] == 1:
        return data[:, 0].copy()
    mono = np.add(data[:, 0], data[:, 1])
    for channel in range(2, data.shape[1]):
        mono += data[:, channel]
    mono /= np.float32(data.shape[1])
    return mono


def _resample(y: np.ndarray, sr: int) -> np.ndarray:
    if sr == SAMPLE_RATE:
        return np.ascontiguousarray(y, dtype=np.float32)
    return np.asarray(dsp.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE), dtype=np.float32)


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


AUDIO_DEMUXERS = ("wav", "w64", "flac", "ogg", "mp3", "mov", "aac", "au", "aiff", "matroska", "asf", "mpegts")
"""The only ffmpeg demuxers allowed to open an input: audio containers that read nothing but the file they
are given. Probing a file can pick a demuxer that opens other files or URLs named inside it (dash, hls,
concat, ffmetadata, image sequences...): an upload holding a DASH manifest would otherwise be decoded to
whatever local file its <BaseURL> names. mpegts is here for HLS audio that yt-dlp saved as one file."""

FFMPEG_INPUT_OPTIONS = ("-protocol_whitelist", "file", "-format_whitelist", ",".join(AUDIO_DEMUXERS))
"""Options placed before every ffmpeg `-i`: the file protocol only (no network, no pipe, no concat:/subfile:
tricks), and only the demuxers above."""


def ffmpeg_input(path: Path) -> list[str]:
    """`-i` and `path` as an explicit file: URL (a file named `pipe:0.mp3` or `http:x.mp3` stays a file),
    behind `FFMPEG_INPUT_OPTIONS`; other input options go before this."""
    return [*FFMPEG_INPUT_OPTIONS, "-i", f"file:{Path(path).resolve()}"]


def _decode_ffmpeg(path: Path, *, max_seconds: float) -> np.ndarray:
    cmd = [
        ffmpeg_exe(), "-nostdin", "-v", "error", *ffmpeg_input(path), "-t", f"{max_seconds + 1:.3f}",
        "-map", "0:a:0", "-vn",
        "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "pipe:1",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise UnsupportedAudio(f"'{path.name}' took too long to decode; it may be damaged.") from None
    if proc.returncode != 0 or not proc.stdout:
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        log.debug("ffmpeg failed on %s: %s", path, reason[-1:] if reason else "no output")
        raise UnsupportedAudio(
            f"'{path.name}' is not audio we can decode (it may be corrupt or another kind of file)."
        )
    y = np.frombuffer(proc.stdout[: len(proc.stdout) // 4 * 4], dtype="<f4").astype(np.float32)
    if y.size > max_seconds * SAMPLE_RATE:
        raise _too_long(path.name, max_seconds)
    return y


def trim_silence(y: np.ndarray, *, name: str = "clip") -> np.ndarray:
    """Drop leading and trailing silence; refuse clips that are silent or too short to judge."""
    if y.size == 0 or float(np.max(np.abs(y))) < SILENT_PEAK:
        raise EmptyAudio(f"'{name}' is silent: there is nothing to listen to.")
    trimmed, _ = dsp.trim(y, top_db=SILENCE_TOP_DB, frame_length=TRIM_FRAME_LENGTH,
                          hop_length=TRIM_HOP_LENGTH)
    if trimmed.size < MIN_CLIP_SECONDS * SAMPLE_RATE:
        raise EmptyAudio(
            f"'{name}' has less than {MIN_CLIP_SECONDS:g} s of sound; send at least a few seconds."
        )
    return np.ascontiguousarray(trimmed, dtype=np.float32)


def piece_spans(n_samples: int, *, max_segments: int) -> list[tuple[int, int]]:
    """The (start, stop) sample offsets, within an `n_samples`-long clip, of the pieces `segment` keeps.

    Policy: full SEGMENT_SAMPLES-long pieces are kept; a final partial piece is kept only if it is at least
    MIN_SEGMENT_FRACTION of a segment (or is the whole clip, when the clip is shorter than one segment).
    When there are more than `max_segments`, that many are taken evenly spread over the clip, so a long
    track is judged on its whole length, not on its intro. Only the last span can be shorter than a
    segment. Knowing the spans before decoding lets `load_segments` decode only them.
    """
    n_full, rest = divmod(n_samples, SEGMENT_SAMPLES)
    spans = [(i * SEGMENT_SAMPLES, (i + 1) * SEGMENT_SAMPLES) for i in range(n_full)]
    if rest and (rest >= MIN_SEGMENT_FRACTION * SEGMENT_SAMPLES or n_full == 0):
        spans.append((n_full * SEGMENT_SAMPLES, n_samples))
    if len(spans) > max_segments:
        keep = np.unique(np.linspace(0, len(spans) - 1, max_segments).round().astype(int))
        spans = [spans[i] for i in keep]
    return spans


def _stack(pieces: list[np.ndarray], starts: list[int], *, clip_samples: int) -> Segments:
    """Segments from pieces of at most SEGMENT_SAMPLES samples; a short piece is filled up by repeating
    itself (zero padding would add silence that shifts every descriptor). `starts` in samples.

    Each piece is copied once, into its row (np.stack of np.resize'd pieces, then a cast, copied each full
    piece three times)."""
    audio = np.empty((len(pieces), SEGMENT_SAMPLES), np.float32)
    for row, piece in zip(audio, pieces):
        row[:] = piece if piece.size == SEGMENT_SAMPLES else np.resize(piece, SEGMENT_SAMPLES)
    return Segments(
        audio=audio,
        starts=np.asarray(starts, dtype=np.float64) / SAMPLE_RATE,
        clip_seconds=clip_samples / SAMPLE_RATE,
    )


def segment(y: np.ndarray, *, max_segments: int) -> Segments:
    """Cut `y` (mono, SAMPLE_RATE) into SEGMENT_SAMPLES-long segments at the spans of `piece_spans`."""
    spans = piece_spans(y.size, max_segments=max_segments)
    return _stack([y[a:b] for a, b in spans], [a for a, _ in spans], clip_samples=y.size)


def overlapping(y: np.ndarray, *, hop: float, max_segments: int) -> Segments:
    """Segments of `y` (mono, SAMPLE_RATE) starting every `hop` seconds (overlapping when hop < 3 s), at
    most `max_segments` of them spread over it: a query's sections then line up within hop/2 with any
    section a library track was analysed on, which is what tells its own recording apart."""
    step = max(1, int(round(hop * SAMPLE_RATE)))
    starts = list(range(0, max(1, y.size - SEGMENT_SAMPLES + 1), step))
    if len(starts) > max_segments:
        starts = [starts[i] for i in np.unique(np.linspace(0, len(starts) - 1, max_segments).round().astype(int))]
    return _stack([y[a:a + SEGMENT_SAMPLES] for a in starts], starts, clip_samples=y.size)


# -- decoding only the sections that will be analysed ------------------------------------------------------
# A six-minute track analysed on 20 segments needs 60 s of it. When the file says how long it is (libsndfile's
# frame count, ffmpeg's container duration), the trim points and the segment spans can be found from a few
# seconds at each end, and only those spans decoded. Any doubt on the way (a header that lies, a read that
# fails, silence where sound was expected) raises _Unsure, and the whole file is decoded as before.

SECTION_MARGIN_SAMPLES = 1024
"""Samples (46 ms) decoded on each side of a section and thrown away: the resampler's edge transient
(measured under 128 samples for soxr_hq) and a decoder's warm-up after ffmpeg seeks stay in them."""

EDGE_PROBE_SAMPLES = 4 * SAMPLE_RATE
"""How much of each end of a file is decoded first to find the leading and trailing silence; doubled while
no sound shows (up to a quarter of the file). The library's longest lead-in is 2.5 s, its longest tail
4.8 s."""

SECTIONS_MAX_FRACTION = 1.0
"""Sections are decoded only when they (with margins and edge probes) are at most this share of the file;
beyond it the whole file costs about as much and gives the trim exactly. libsndfile seeks in a Vorbis file
for about 0.1 ms, so a section costs what decoding its samples costs, and the whole-file path pays for
framing and resampling all of it besides. Measured at 24 segments on both dev libraries (CPU time of
`load_segments`, 19 Vorbis files whose sections cover 0.6 to 1.5 of them): sections cost 0.51-0.66 of the
whole file below 0.75 of it, 0.73-0.84 from 0.75 to 0.95, 0.94-1.05 from 1.0 to 1.5."""

SECTIONS_FFMPEG_SECONDS = 30.0
"""Time allowed for all the ffmpeg runs of one sectioned decode; past it the whole-file decode takes over."""

SEEKABLE_DEMUXERS = frozenset({"ogg", "mp3", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})
"""ffmpeg containers whose input seeking we measured (bundled ffmpeg 9, benchmarks/bench_decode.py): ogg
and mp3 land on the exact sample, now and then up to a block off; an mp4 read ends exactly where asked
(its start is late, so it is placed by its end); matroska's millisecond timestamps land within about 30
samples. Other containers are decoded whole."""

_SETTLE_ROUNDS = 3
"""Rounds of (trim from the reference, spans from the trim, reference from the spans) before giving up; the
second round almost always reads nothing new, 111 library decodes never needed a third."""

_INPUT_LINE = re.compile(r"^Input #0, ([\w,]+?), from ", re.MULTILINE)
_DURATION_LINE = re.compile(r"^  Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?),", re.MULTILINE)
_AUDIO_STREAM_LINE = re.compile(r"^  Stream #0:\d+\S*: Audio: .*?, (\d+) Hz", re.MULTILINE)


class _Unsure(Exception):
    """The sections path cannot promise the whole-file answer for this file: decode the whole file."""


class _Unreadable(_Unsure):
    """libsndfile opened the file but failed to read it; ffmpeg may still read it, as in `decode`."""


Span = tuple[int, int | None]
"""[start, stop) in samples at SAMPLE_RATE from the start of the file; stop None means "to the end"."""


def _cut(y: np.ndarray, start: int, stop: int) -> np.ndarray:
    """y[start:stop], refusing a chunk that came back short or holds NaN/infinity (the whole-file decode
    then gives the proper error)."""
    if start < 0 or stop > y.size:
        raise _Unsure("a section decoded shorter than asked")
    piece = y[start:stop]
    if not np.all(np.isfinite(piece)):
        raise _Unsure("invalid samples")
    return piece


class _Reader(Protocol):
    """A decoder that seeks exactly: `read(first, count)` gives (count, channels) float32 source frames from
    frame `first` (fewer at the file's end) or raises _Unreadable."""

    samplerate: int
    channels: int
    frames: int

    def read(self, first: int, count: int) -> np.ndarray: ...


class _SoundfileReader:
    """libsndfile's seek and read, behind `_Reader`."""

    def __init__(self, handle: soundfile.SoundFile) -> None:
        self._handle = handle
        self.samplerate, self.channels, self.frames = handle.samplerate, handle.channels, handle.frames

    def read(self, first: int, count: int) -> np.ndarray:
        import soundfile as sf

        try:
            if self._handle.seek(first) != first:
                raise _Unreadable("libsndfile could not seek there")
            return self._handle.read(count, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise _Unreadable(f"libsndfile: {exc}") from None


class _VorbisReader:
    """core.ogg_vorbis (FFmpeg's Vorbis decoder on our Ogg reader) behind `_Reader`."""

    def __init__(self, path: Path) -> None:
        try:
            self._file = OggVorbis(path)
        except VorbisUnreadable as exc:
            raise _Unreadable(str(exc)) from None
        self.samplerate, self.channels = self._file.samplerate, self._file.channels
        self.frames = self._file.frames

    def read(self, first: int, count: int) -> np.ndarray:
        try:
            return self._file.read(first, count)
        except VorbisUnreadable as exc:
            raise _Unreadable(str(exc)) from None


class _ReaderSections:
    """Spans of a file an exact-seeking decoder reads, as mono float32 at SAMPLE_RATE: seek, read the span and
    its margins, mix down, resample, cut. Reads start on a source frame that falls exactly on an output
    sample, so the resampled span equals the whole-file decode's samples there (to float rounding).

    The read to the end finds where the file really ends: libsndfile counts a few frames too many in the
    header of some mp3 files (3 of the Debian dev library, 5 500-8 400 at 22 050 Hz) and of a Vorbis file
    whose first page trims its start (104), and its whole-file read stops at the last one it decodes. A
    span's read that stops short of what the file holds is still refused."""

    def __init__(self, reader: _Reader, *, max_seconds: float) -> None:
        sr, channels, frames = reader.samplerate, reader.channels, reader.frames
        if not (0 < sr <= MAX_SAMPLE_RATE and 0 < channels <= MAX_CHANNELS
                and 0 < frames <= max_seconds * sr):
            raise _Unsure("a header the whole-file decode should judge")
        self._reader = reader
        self._sr = sr
        self._frames = frames
        """Source frames: the header's count until the end has been read, then the count read."""
        self._grid = sr // math.gcd(sr, SAMPLE_RATE)
        self.total_estimate = self._resampled(frames)
        self.decoded_seconds = 0.0

    def _resampled(self, frames: int) -> int:
        """Samples at SAMPLE_RATE of `frames` source frames: librosa.resample's output length for them."""
        return -(-frames * SAMPLE_RATE // self._sr)

    def read(self, spans: list[Span]) -> list[np.ndarray]:
        return [self._read(a, b) for a, b in spans]

    def _read(self, start: int, stop: int | None) -> np.ndarray:
        sr, frames = self._sr, self._frames
        first = max(0, (start - SECTION_MARGIN_SAMPLES) * sr // SAMPLE_RATE) // self._grid * self._grid
        last = frames if stop is None else min(frames,
                                                -(-(stop + SECTION_MARGIN_SAMPLES) * sr // SAMPLE_RATE))
        data = self._reader.read(first, last - first)
        if data.shape[0] != last - first:
            if stop is not None or data.shape[0] == 0:
                raise _Unsure("the file ends before its header says")
            # the read to the end stopped short: the file ends here (`_sections` refuses more than 1 s
            # off the header's length)
            self._frames = frames = first + data.shape[0]
        self.decoded_seconds += data.shape[0] / sr
        y = _resample(_mix_down(data), sr)
        offset = first * SAMPLE_RATE // sr
        return _cut(y, start - offset, (self._resampled(frames) if stop is None else stop) - offset)


class _FfmpegSections:
    """Spans of a file only ffmpeg reads, as mono float32 at SAMPLE_RATE: one ffmpeg run per batch of
    spans, with one input per span seeking before it opens (`-ss` before `-i`) and reading at most the
    span and its margins (`-t`), each written to its own raw file. Measured faster than one run per span
    (process start-up) and than one run whose filter selects the spans (it decodes everything)."""

    def __init__(self, path: Path, *, max_seconds: float) -> None:
        """Read the container's duration and the audio stream's rate from ffmpeg's own description of the
        file (no decoding)."""
        self._path = path
        self._deadline = time.monotonic() + SECTIONS_FFMPEG_SECONDS
        described = self._run(["-v", "info", *ffmpeg_input(path)])
        text = described.stderr.decode("utf-8", "replace")  # exits 1: no output was asked for
        demuxer, duration, stream = (_INPUT_LINE.search(text), _DURATION_LINE.search(text),
                                     _AUDIO_STREAM_LINE.search(text))
        if demuxer is None or duration is None or stream is None or "Estimating duration" in text:
            raise _Unsure("ffmpeg does not know the length")
        if demuxer.group(1) not in SEEKABLE_DEMUXERS:
            raise _Unsure(f"seeking in {demuxer.group(1)} is not measured")
        hours, minutes, seconds = duration.groups()
        seconds_total = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        rate = int(stream.group(1))
        if not (0 < seconds_total <= max_seconds and 0 < rate <= MAX_SAMPLE_RATE):
            raise _Unsure("a length or rate the whole-file decode should judge")
        self._grid = SAMPLE_RATE // math.gcd(rate, SAMPLE_RATE)
        self._late = -(-2048 * SAMPLE_RATE // rate)  # two AAC frames: more than a late start is a short read
        self.total_estimate = round(seconds_total * SAMPLE_RATE)
        """Samples at SAMPLE_RATE, to 10 ms: the exact length comes from decoding the end."""
        self._end = self.total_estimate + 2 * SAMPLE_RATE  # until the end has been read
        self.decoded_seconds = 0.0

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[bytes]:
        """One ffmpeg run within the time left to this decode."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise _Unsure("ffmpeg took too long")
        try:
            return subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", *args], capture_output=True,
                                  timeout=remaining, check=False)
        except subprocess.TimeoutExpired:
            raise _Unsure("ffmpeg took too long") from None

    def read(self, spans: list[Span]) -> list[np.ndarray]:
        # seek to an output sample that is a whole number of source samples, so resampling lines up
        firsts = [max(0, a - SECTION_MARGIN_SAMPLES) // self._grid * self._grid for a, _ in spans]
        # "to the end" reads up to 2 s past the container's duration: reaching that means the duration lied
        lasts = [self.total_estimate + 2 * SAMPLE_RATE if b is None
                 else min(b + SECTION_MARGIN_SAMPLES, self._end) for _, b in spans]
        args = ["-v", "error"]
        for first, last in zip(firsts, lasts):
            # no -ss for the start: an mp4 decoded from its first sample skips its encoder delay exactly
            seek = ["-ss", f"{first / SAMPLE_RATE:.6f}"] if first else []
            args += [*seek, "-t", f"{(last - first) / SAMPLE_RATE:.6f}", *ffmpeg_input(self._path)]
        with tempfile.TemporaryDirectory(prefix="cratedigger-") as tmp:
            outputs = [Path(tmp) / f"{i}.f32" for i in range(len(spans))]
            for i, output in enumerate(outputs):
                args += ["-map", f"{i}:a:0", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le",
                         str(output)]
            if self._run(args).returncode != 0:
                raise _Unsure("ffmpeg failed")
            chunks = [np.fromfile(output, dtype="<f4") if output.is_file() else np.zeros(0, np.float32)
                      for output in outputs]
        pieces = []
        for (start, stop), first, last, y in zip(spans, firsts, lasts, chunks):
            self.decoded_seconds += y.size / SAMPLE_RATE
            if stop is None:
                if first + y.size > last - SAMPLE_RATE:
                    raise _Unsure("the file goes on past its duration")
                self._end = stop = first + y.size
                origin = first
            else:
                # a read ends where asked (-t counts from the requested start), but an mp4's starts up to one
                # AAC frame late (the frame before the target is not decoded): align it on its end
                if y.size < last - first - self._late:
                    raise _Unsure("a section decoded shorter than asked")
                origin = last - y.size
            pieces.append(_cut(y, start - origin, stop - origin))
        return pieces


_Source = _ReaderSections | _FfmpegSections


@dataclass(frozen=True)
class _Chunk:
    """Decoded samples [start, start + samples.size) of the file, and the RMS of the trim frames that lie
    wholly inside them (frame t is centred on sample t * TRIM_HOP_LENGTH; at the file's ends it is
    zero-padded, as librosa does): rms[i] belongs to frame first_frame + i."""

    start: int
    samples: np.ndarray
    first_frame: int
    rms: np.ndarray

    @classmethod
    def of(cls, start: int, samples: np.ndarray, *, total: int) -> _Chunk:
        half = TRIM_FRAME_LENGTH // 2
        pad_left = half if start == 0 else 0
        pad_right = half if start + samples.size == total else 0
        padded = np.pad(samples, (pad_left, pad_right)) if pad_left or pad_right else samples
        origin = start - pad_left  # file sample of padded[0]
        first = -(-(origin + half) // TRIM_HOP_LENGTH)
        last = (origin + padded.size - half) // TRIM_HOP_LENGTH
        if last < first:
            return cls(start, samples, first, np.zeros(0, np.float32))
        offset = first * TRIM_HOP_LENGTH - half - origin
        framed = padded[offset:offset + (last - first) * TRIM_HOP_LENGTH + TRIM_FRAME_LENGTH]
        rms = dsp.rms(y=framed, frame_length=TRIM_FRAME_LENGTH, hop_length=TRIM_HOP_LENGTH,
                      center=False)[0]
        return cls(start, samples, first, rms)

    @property
    def stop(self) -> int:
        return self.start + self.samples.size

    def sounding(self, reference: float) -> np.ndarray:
        """Frame numbers that librosa.effects.trim counts as sound against `reference` (its loudest RMS)."""
        db = dsp.amplitude_to_db(self.rms, ref=reference, top_db=None)
        return self.first_frame + np.flatnonzero(db > -SILENCE_TOP_DB)


class _Decoded:
    """The parts of one file decoded so far, as disjoint chunks in file order (touching reads are joined):
    each holds what the whole-file decode holds at those samples. Reads only what no chunk holds yet, so a
    span that moved a little costs only the samples it moved by."""

    def __init__(self, source: _Source, *, head: np.ndarray, tail_start: int, tail: np.ndarray) -> None:
        self.source = source
        self.total = tail_start + tail.size
        self.chunks = [_Chunk.of(0, head, total=self.total), _Chunk.of(tail_start, tail, total=self.total)]

    def reference(self) -> float:
        """The loudest trim frame decoded: the whole-file trim's reference is the loudest of all frames, so
        this is at most that, and equal when the loudest frame lies in a decoded part."""
        return max(float(np.max(c.rms, initial=0.0)) for c in self.chunks)

    def peak(self) -> float:
        return max(float(np.max(np.abs(c.samples), initial=0.0)) for c in self.chunks)

    def sound_bounds(self, reference: float) -> tuple[int, int]:
        """librosa.effects.trim's [start, stop) against `reference`, decoding more of either end while it
        holds no sound; _Unsure past a quarter of the file."""
        cap = self.total // 4
        while (sound := self.chunks[0].sounding(reference)).size == 0:
            if self.chunks[0].stop >= cap:
                raise _Unsure("no sound near the start")
            self.ensure([(0, min(cap, 2 * self.chunks[0].stop))])
        start = int(sound[0]) * TRIM_HOP_LENGTH
        while (sound := self.chunks[-1].sounding(reference)).size == 0:
            held = self.total - self.chunks[-1].start
            if held >= cap:
                raise _Unsure("no sound near the end")
            self.ensure([(self.total - min(cap, 2 * held), self.total)])
        stop = min(self.total, (int(sound[-1]) + 1) * TRIM_HOP_LENGTH)
        return start, stop

    def ensure(self, spans: list[tuple[int, int]]) -> None:
        """Decode what the spans need and no chunk holds, in one batch; gaps of at most two margins between
        the missing parts are read too (cheaper than a seek and two margins)."""
        missing: list[tuple[int, int]] = []
        for a, b in sorted(spans):
            for gap in self._gaps(a, b):
                if missing and gap[0] - missing[-1][1] <= 2 * SECTION_MARGIN_SAMPLES:
                    missing[-1] = (missing[-1][0], max(missing[-1][1], gap[1]))
                else:
                    missing.append(gap)
        if not missing:
            return
        added = [(a, samples) for (a, _), samples in zip(missing, self.source.read(list(missing)))]
        self._join(added)

    def _gaps(self, start: int, stop: int) -> list[tuple[int, int]]:
        """The parts of [start, stop) no chunk holds."""
        gaps, at = [], start
        for c in self.chunks:
            if c.stop <= at or c.start >= stop:
                continue
            if c.start > at:
                gaps.append((at, c.start))
            at = max(at, c.stop)
        if at < stop:
            gaps.append((at, stop))
        return gaps

    def _join(self, added: list[tuple[int, np.ndarray]]) -> None:
        """Insert new disjoint pieces and join everything that touches or overlaps into single chunks."""
        pieces = sorted([(c.start, c.samples) for c in self.chunks] + added, key=lambda p: p[0])
        joined: list[tuple[int, list[np.ndarray], int]] = []
        for start, samples in pieces:
            stop = start + samples.size
            if joined and start <= joined[-1][2]:
                first, parts, end = joined[-1]
                if stop > end:
                    parts.append(samples[end - start:])
                joined[-1] = (first, parts, max(end, stop))
            else:
                joined.append((start, [samples], stop))
        kept = {(c.start, c.stop): c for c in self.chunks}
        self.chunks = [kept.get((first, end)) or _Chunk.of(first, np.concatenate(parts), total=self.total)
                       for first, parts, end in joined]

    def cut(self, start: int, stop: int) -> np.ndarray:
        chunk = next(c for c in self.chunks if c.start <= start and stop <= c.stop)
        return chunk.samples[start - chunk.start:stop - chunk.start]


def sections_pay(total_samples: int, *, max_segments: int) -> bool:
    """Whether decoding sections of a `total_samples`-long file (at SAMPLE_RATE) is worth it: at most
    SECTIONS_MAX_FRACTION of the file, counting margins and the two edge probes."""
    cost = max_segments * (SEGMENT_SAMPLES + 2 * SECTION_MARGIN_SAMPLES) + 2 * EDGE_PROBE_SAMPLES
    return cost <= SECTIONS_MAX_FRACTION * total_samples


def _sections(source: _Source, *, max_segments: int, name: str) -> Segments:
    """What `segment(trim_silence(decode(...)))` gives, decoding only the ends and the segments' spans.

    Trim: librosa.effects.trim's rule on the decoded ends, against the loudest trim frame decoded (ends and
    sections); the whole file's loudest frame may lie between sections, so on a fade the trim can keep a few
    frames more than the whole-file path. The spans depend on the trim and the reference on the spans, so
    the two are settled in turn (the second round almost always decodes nothing new). Silent sections in
    the middle are kept, as the whole-file path keeps them.
    """
    estimate = source.total_estimate
    if not sections_pay(estimate, max_segments=max_segments):
        raise _Unsure("the segments cover most of the file")
    edge = min(EDGE_PROBE_SAMPLES, estimate // 4)
    head, tail = source.read([(0, edge), (estimate - edge, None)])
    decoded = _Decoded(source, head=head, tail_start=estimate - edge, tail=tail)
    if abs(decoded.total - estimate) > SAMPLE_RATE:
        raise _Unsure("the file's length is not what its header says")
    reference = decoded.reference()
    for _ in range(_SETTLE_ROUNDS):
        start, stop = decoded.sound_bounds(reference)
        spans = piece_spans(stop - start, max_segments=max_segments)
        decoded.ensure([(start + a, start + b) for a, b in spans])
        settled, reference = reference, decoded.reference()
        if np.isclose(reference, settled, rtol=1e-6, atol=0.0):
            break
    else:
        raise _Unsure("the loudness reference did not settle")
    if decoded.peak() < SILENT_PEAK:
        raise _Unsure("only silence decoded")
    log.debug("%s: decoded %.1f s of %.1f s for %d segments; sound from %.3f s to %.3f s", name,
              source.decoded_seconds, decoded.total / SAMPLE_RATE, len(spans), start / SAMPLE_RATE,
              stop / SAMPLE_RATE)
    return _stack([decoded.cut(start + a, start + b) for a, b in spans], [a for a, _ in spans],
                  clip_samples=stop - start)


def _load_sections(path: Path, *, max_seconds: float, max_segments: int) -> Segments:
    """The sections path with our Vorbis reader, else libsndfile, else ffmpeg (the order `decode` tries
    them); _Unsure when unsure."""
    import soundfile as sf

    try:
        return _sections(_ReaderSections(_VorbisReader(path), max_seconds=max_seconds),
                         max_segments=max_segments, name=path.name)
    except _Unreadable as why:
        log.debug("%s: %s; trying libsndfile", path.name, why)
    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        handle = None
    if handle is not None:
        with handle:
            try:
                if handle.subtype == "OPUS":
                    # libsndfile 1.2 stops with "malformed" 15 s into Opus files made by ffmpeg, so `decode`
                    # reads a long Opus file with ffmpeg; its sections are read with ffmpeg too
                    raise _Unreadable("libsndfile's Opus reader")
                return _sections(_ReaderSections(_SoundfileReader(handle), max_seconds=max_seconds),
                                 max_segments=max_segments, name=path.name)
            except _Unreadable as why:
                log.debug("%s: %s; trying ffmpeg", path.name, why)
    return _sections(_FfmpegSections(path, max_seconds=max_seconds), max_segments=max_segments,
                     name=path.name)


@quiet
def load_segments(path: str | Path, *, max_seconds: float, max_segments: int) -> Segments:
    """decode → trim → segment, the path every analysis takes.

    For a file whose segments cover little of it (`sections_pay`), only its ends and the segments' spans are
    decoded (see `_sections`); anything unexpected on the way, and every shorter file, takes the whole-file
    path, so errors and limits are those of `decode`.
    """
    path = Path(path)
    _check_file(path)
    try:
        return _load_sections(path, max_seconds=max_seconds, max_segments=max_segments)
    except _Unsure as why:
        log.debug("%s: decoding the whole file (%s)", path.name, why)
    y = decode(path, max_seconds=max_seconds)
    return segment(trim_silence(y, name=path.name), max_segments=max_segments)
