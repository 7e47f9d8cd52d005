"""The pre-trained audio front-end: 3-s segments in, musicnn's learned embedding per segment out.

The network is our Keras 3 port of musicnn's MSD_musicnn (Pons & Serra 2019, trained to tag the Million Song
Dataset; ISC licence), with the package's checkpoint weights converted into it by
`core.training.musicnn_port` and shipped as `models/frontend_msd_musicnn.{keras,tflite,onnx,json}`. The
runtime never imports musicnn or tf-keras.

Input: each 22 050-Hz segment is resampled to 16 kHz and turned into a 187-frame, 96-band log-mel patch, as
the network was trained: power mel spectrogram (n_fft 512, hop 256), then log10(1 + 10 000 * power) in
float32. (The package computes that step in float16, which overflows to inf on loud audio.)

Output per patch: `penultimate`, the 200-d layer under the tag classifier (what genre, mood and similarity
read), and `tags`, the 50 MSD tag probabilities.

Runtimes as for every artefact of ours (core.runtime): ONNX Runtime, else LiteRT, else Keras, the first whose
export and package are present.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core import dsp
from core.constants import (
    FRONTEND_HOP_LENGTH,
    FRONTEND_LOG_SCALE,
    FRONTEND_N_FFT,
    FRONTEND_N_MELS,
    FRONTEND_PATCH_FRAMES,
    FRONTEND_SAMPLE_RATE,
    SAMPLE_RATE,
    frontend_constants,
)
from core.errors import ModelMismatch
from core.runtime import DEFAULT_THREADS, Runner, open_runner

log = logging.getLogger(__name__)

ARTEFACT = "frontend_msd_musicnn"
KIND = "frontend-musicnn"
ARTEFACT_VERSION = 1
OUTPUTS: tuple[str, ...] = ("penultimate", "tags")
EMBEDDING_DIM = 200
TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
    "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
    "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock",
    "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb",
    "indie pop", "sad", "House", "happy",
)
"""The last.fm tags of the Million Song Dataset that the `tags` output scores, in its order (musicnn's
`configuration.MSD_LABELS`)."""
TAG_COUNT = len(TAGS)


@lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    return dsp.mel_filters(sr=FRONTEND_SAMPLE_RATE, n_fft=FRONTEND_N_FFT,
                           n_mels=FRONTEND_N_MELS).astype(np.float32)


def log_mel(audio_16k: np.ndarray) -> np.ndarray:
    """(..., samples) float32 at 16 kHz -> (..., frames, FRONTEND_N_MELS) float32 log-mel, frames first.

    librosa.feature.melspectrogram's defaults (centred, zero-padded frames, Slaney mel filters), power 2,
    then the network's log compression in float32, in place."""
    power = dsp.stft_power(audio_16k, n_fft=FRONTEND_N_FFT, hop_length=FRONTEND_HOP_LENGTH)
    mel = np.matmul(power, _mel_basis().T)
    mel *= np.float32(FRONTEND_LOG_SCALE)
    mel += np.float32(1.0)
    return np.log10(mel, out=mel)


def to_frontend_rate(segments: np.ndarray) -> np.ndarray:
    """(n, samples) at SAMPLE_RATE -> (n, samples') at FRONTEND_SAMPLE_RATE."""
    return dsp.resample(np.atleast_2d(np.asarray(segments, np.float32)), orig_sr=SAMPLE_RATE,
                        target_sr=FRONTEND_SAMPLE_RATE, axis=-1)


def patches_from_segments(segments: np.ndarray) -> np.ndarray:
    """(n, SEGMENT_SAMPLES) at 22 050 Hz -> (n, FRONTEND_PATCH_FRAMES, FRONTEND_N_MELS) network input.

    A 66 149-sample segment is 48 000 samples at 16 kHz, 188 centred frames: the first 187 are the patch."""
    mel = log_mel(to_frontend_rate(segments))
    if mel.shape[-2] < FRONTEND_PATCH_FRAMES:
        raise ValueError(f"segments of {mel.shape[-2]} frames; the front-end reads {FRONTEND_PATCH_FRAMES}")
    return np.ascontiguousarray(mel[:, :FRONTEND_PATCH_FRAMES, :])


@dataclass(frozen=True)
class Sidecar:
    """What the weights need besides themselves: the constants they were made for, where they came from."""

    constants: dict[str, Any]
    outputs: list[str]
    origin: dict[str, Any]
    kind: str = KIND
    version: int = ARTEFACT_VERSION


def read_sidecar(path: Path) -> Sidecar:
    """The artefact's sidecar, checked against our front-end constants (ModelMismatch if it differs)."""
    if not path.is_file():
        raise ModelMismatch(f"{path} is missing: cannot tell how the front-end was made")
    raw = json.loads(path.read_text())
    sidecar = Sidecar(**{k: raw[k] for k in Sidecar.__dataclass_fields__ if k in raw})
    if sidecar.kind != KIND or sidecar.version != ARTEFACT_VERSION:
        raise ModelMismatch(f"{path} is a {sidecar.kind} artefact version {sidecar.version}; "
                            f"this code reads {KIND} version {ARTEFACT_VERSION}")
    ours = frontend_constants()
    diff = {k: (sidecar.constants.get(k), v) for k, v in ours.items() if sidecar.constants.get(k) != v}
    if diff:
        raise ModelMismatch(f"{path} was made with other front-end constants (theirs, ours): {diff}")
    if list(sidecar.outputs) != list(OUTPUTS):
        raise ModelMismatch(f"{path} gives {sidecar.outputs}, this code reads {list(OUTPUTS)}")
    return sidecar


class Frontend:
    """The loaded network and whichever runtime opened it: patches in, named per-patch outputs out."""

    def __init__(self, sidecar: Sidecar, runner: Runner) -> None:
        self.sidecar = sidecar
        self.runner = runner

    @property
    def name(self) -> str:
        """What produced an analysis: a change of weights or recipe means the library is re-analysed."""
        return f"{self.sidecar.origin.get('model', ARTEFACT)}-v{self.sidecar.version}"

    @property
    def runtime(self) -> str:
        return self.runner.runtime

    def __call__(self, patches: np.ndarray) -> dict[str, np.ndarray]:
        """(n, FRONTEND_PATCH_FRAMES, FRONTEND_N_MELS) -> {"penultimate": (n, 200), "tags": (n, 50)}."""
        if len(patches) == 0:
            return {"penultimate": np.zeros((0, EMBEDDING_DIM), np.float32),
                    "tags": np.zeros((0, TAG_COUNT), np.float32)}
        out = self.runner(patches)
        return {name: out[name] for name in OUTPUTS}

    def embed_segments(self, segments: np.ndarray) -> dict[str, np.ndarray]:
        """(n, SEGMENT_SAMPLES) audio at 22 050 Hz -> the outputs per segment."""
        return self(patches_from_segments(segments))


def artefact_path(models_dir: Path) -> Path:
    return models_dir / f"{ARTEFACT}.keras"


def load_frontend(models_dir: Path, *, runtime: str | None = None, threads: int = DEFAULT_THREADS) -> Frontend:
    """The shipped front-end in the lightest runtime available (or `runtime`); the sidecar is checked
    first, so a mismatched artefact is refused before any runtime is paid for."""
    keras_path = artefact_path(models_dir)
    sidecar = read_sidecar(keras_path.with_suffix(".json"))
    runner = open_runner(keras_path, runtime=runtime, threads=threads)
    log.info("front-end %s loaded (%s runtime)", ARTEFACT, runner.runtime)
    return Frontend(sidecar, runner)
