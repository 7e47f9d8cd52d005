"""Shared fixtures: where the team's data lives, and small synthetic signals tests may make themselves."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

pytest_plugins = ["tests.http_fixture", "tests.servers"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CRATEDIGGER_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def _tensorflow_installed() -> bool:
    from core.runtime import keras_available

    return keras_available()


needs_tensorflow = pytest.mark.skipif(
    not _tensorflow_installed() and os.environ.get("CI") != "true",  # CI installs it: missing there, fail
    reason="TensorFlow and Keras are not installed: they are the `train` extra (python3 dev.py test installs "
           "it; pip install -e '.[train]')")
"""For tests of training and of the Keras originals; the runtime needs neither."""


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a skip that says why: a user's fresh clone does not have it."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"team data not found at {SHARED_DATA} (set CRATEDIGGER_SHARED_DATA to point at it)")
    return SHARED_DATA


def synth_tone(seconds: float, *, freq: float = 440.0, sr: int = 22_050, amp: float = 0.3,
               seed: int = 0) -> np.ndarray:
    """A harmonic tone with a little noise and a 2-Hz pulse: enough structure for every feature."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3))
    y = y * (0.6 + 0.4 * (np.sin(2 * np.pi * 2 * t) > 0))
    y = y + 0.02 * rng.standard_normal(t.size)
    return (amp * y / np.max(np.abs(y))).astype(np.float32)


def wav_bytes(seconds: float, *, freq: float, seed: int) -> bytes:
    """`synth_tone` as the bytes of a WAV file: what a member uploads or a link serves in the bot tests."""
    out = io.BytesIO()
    sf.write(out, synth_tone(seconds, freq=freq, seed=seed), 22_050, format="WAV")
    return out.getvalue()


@pytest.fixture
def tone() -> type[np.ndarray]:
    return synth_tone  # type: ignore[return-value]
