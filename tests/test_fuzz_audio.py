"""Property: whatever bytes a user uploads under whatever name, decoding ends in audio or a typed UserError."""
from __future__ import annotations

import functools
import io
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.audio import AUDIO_EXTENSIONS, decode_bytes, load_segments, segment, trim_silence
from core.errors import UserError
from tests.audio_files import write_audio
from tests.test_audio_sections import music

EXTENSIONS = sorted(AUDIO_EXTENSIONS) + [".txt", ".png", ".zip", ""]


def _wav_header_then(noise: bytes, rate: int) -> bytes:
    """A valid WAV header (at a possibly absurd rate) followed by arbitrary bytes: malformed but plausible."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros(16, dtype=np.int16), samplerate=max(1, rate), format="WAV", subtype="PCM_16")
    return buf.getvalue()[:44] + noise


def _analyse(data: bytes, name: str) -> None:
    try:
        y = decode_bytes(data, name, max_seconds=30)
        segment(trim_silence(y, name=name), max_segments=4)
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4096), ext=st.sampled_from(EXTENSIONS))
def test_random_bytes_never_escape_as_anything_but_user_errors(data: bytes, ext: str) -> None:
    _analyse(data, f"upload{ext}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(noise=st.binary(max_size=8192), rate=st.integers(min_value=1, max_value=2**31 - 1),
       ext=st.sampled_from([".wav", ".mp3", ".ogg"]))
def test_malformed_headers_and_absurd_sample_rates(noise: bytes, rate: int, ext: str) -> None:
    _analyse(_wav_header_then(noise, rate), f"upload{ext}")


@functools.cache
def _long_file(suffix: str) -> bytes:
    """40 s of music: long enough for load_segments to decode 4 segments by sections."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_audio(Path(tmp) / f"long{suffix}", music(40.0)).read_bytes()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(suffix=st.sampled_from([".ogg", ".flac", ".mp3", ".opus", ".m4a"]),
       patches=st.lists(st.tuples(st.floats(min_value=0.0, max_value=1.0),
                                  st.binary(min_size=1, max_size=512)), min_size=1, max_size=6))
def test_damaged_long_files_decoded_by_sections_end_in_segments_or_user_errors(
        suffix: str, patches: list[tuple[float, bytes]]) -> None:
    """Bytes overwritten anywhere in a file the sections path seeks in (header, pages, frames, index)."""
    data = bytearray(_long_file(suffix))
    for where, junk in patches:
        at = int(where * (len(data) - 1))
        data[at:at + len(junk)] = junk
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(bytes(data))
        try:
            segments = load_segments(path, max_seconds=30 * 60, max_segments=4)
        except UserError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert segments.audio.shape[1:] == (66_149,) and np.all(np.isfinite(segments.audio))
