"""Decode any common audio file to mono float32 at 22 050 Hz, trim silence and cut 3-s segments.

Decoding tries libsndfile first (fast, in-process, knows its length before reading) and falls back to the
ffmpeg binary bundled by imageio-ffmpeg for everything else (mp3, m4a/aac, opus in some containers...).
ffmpeg is told to stop one second past the duration cap, so an hour-long file or a decompression bomb
costs at most that much decoding before it is refused.
"""
from __future__ import annotations

import logging
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".mp4", ".au", ".snd",
     ".aif", ".aiff", ".webm", ".mka", ".wma"}
)
SILENT_PEAK = 10 ** (-80 / 20)
"""Peak amplitude below -80 dBFS counts as digital silence."""

FFMPEG_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Segments:
    """Fixed-length segments of one clip: `audio` is (n, SEGMENT_SAMPLES) float32, `starts` in seconds."""

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


def decode(path: str | Path, *, max_seconds: float) -> np.ndarray:
    """Decode `path` to mono float32 at SAMPLE_RATE. Raises a typed `UserError` for anything unusable."""
    path = Path(path)
    if not path.is_file():
        raise FileMissing(f"no such file: {path}")
    check_extension(path.name)
    if path.stat().st_size == 0:
        raise EmptyAudio(f"'{path.name}' is empty (0 bytes).")
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


def _decode_soundfile(path: Path, *, max_seconds: float) -> np.ndarray | None:
    """Decode with libsndfile, or None when it does not know the format (ffmpeg gets a try)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None
    if info.samplerate <= 0 or info.channels <= 0:
        return None
    if info.frames > (max_seconds + 1) * info.samplerate:
        raise _too_long(path.name, max_seconds)
    if info.samplerate > 384_000 or info.channels > 64:
        raise UnsupportedAudio(f"'{path.name}' has an unusual format ({info.samplerate} Hz, "
                               f"{info.channels} channels) that we do not analyse.")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        log.debug("libsndfile failed on %s: %s", path, exc)
        return None
    mono = data.mean(axis=1, dtype=np.float32)
    return _resample(mono, sr)


def _resample(y: np.ndarray, sr: int) -> np.ndarray:
    if sr == SAMPLE_RATE:
        return np.ascontiguousarray(y, dtype=np.float32)
    import librosa

    return librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq").astype(np.float32)


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _decode_ffmpeg(path: Path, *, max_seconds: float) -> np.ndarray:
    cmd = [
        ffmpeg_exe(), "-nostdin", "-v", "error", "-protocol_whitelist", "file,pipe", "-i", str(path),
        "-t", f"{max_seconds + 1:.3f}", "-map", "0:a:0", "-vn",
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
    import librosa

    trimmed, _ = librosa.effects.trim(y, top_db=SILENCE_TOP_DB, frame_length=TRIM_FRAME_LENGTH,
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
    itself (zero padding would add silence that shifts every descriptor). `starts` in samples."""
    return Segments(
        audio=np.stack([np.resize(piece, SEGMENT_SAMPLES) for piece in pieces]).astype(np.float32),
        starts=np.asarray(starts, dtype=np.float64) / SAMPLE_RATE,
        clip_seconds=clip_samples / SAMPLE_RATE,
    )


def segment(y: np.ndarray, *, max_segments: int) -> Segments:
    """Cut `y` (mono, SAMPLE_RATE) into SEGMENT_SAMPLES-long segments at the spans of `piece_spans`."""
    spans = piece_spans(y.size, max_segments=max_segments)
    return _stack([y[a:b] for a, b in spans], [a for a, _ in spans], clip_samples=y.size)


def load_segments(path: str | Path, *, max_seconds: float, max_segments: int) -> Segments:
    """decode → trim → segment, the path every analysis takes."""
    y = decode(path, max_seconds=max_seconds)
    return segment(trim_silence(y, name=Path(path).name), max_segments=max_segments)
