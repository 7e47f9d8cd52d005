"""Property: whatever bytes a user uploads under whatever name, decoding ends in audio or a typed UserError."""
from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.audio import AUDIO_EXTENSIONS, decode_bytes, segment, trim_silence
from core.errors import UserError

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
