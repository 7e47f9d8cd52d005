"""Audio constants, in one place.

They are recorded inside every model artefact, and inference refuses an artefact whose constants differ:
a model trained on other frames would otherwise answer confidently and wrongly.
"""
from __future__ import annotations

SAMPLE_RATE = 22_050
"""Hz. GTZAN's rate; everything is resampled to it."""

SEGMENT_SECONDS = 3.0
SEGMENT_SAMPLES = 66_149
"""Samples per 3-s segment: the published GTZAN 3-s tables cut 66 149 samples, so we do too."""

N_FFT = 2048
HOP_LENGTH = 512
N_MFCC = 20
"""MFCCs per frame in the descriptor set (librosa's default)."""

MIN_SEGMENT_FRACTION = 0.5
"""A final partial segment is kept (padded by repetition) only if it is at least this much of a segment."""

MIN_CLIP_SECONDS = 1.0
"""Shorter clips (after trimming silence) are refused: too little music to say anything about."""

SILENCE_TOP_DB = 60.0
"""Leading/trailing audio quieter than peak - this many dB is trimmed; a clip with nothing above it is silent."""

TRIM_FRAME_LENGTH = 2048
TRIM_HOP_LENGTH = 512
"""Samples per RMS frame and between frames when finding the silence to trim (librosa.effects.trim's
defaults): trim points fall on multiples of TRIM_HOP_LENGTH."""

GENRES: tuple[str, ...] = (
    "blues", "classical", "country", "disco", "hiphop",
    "jazz", "metal", "pop", "reggae", "rock",
)
"""GTZAN's ten genres, in the order of every model's output."""


def audio_constants() -> dict[str, float | int]:
    """The constants a model artefact must match, as stored inside it."""
    return {
        "sample_rate": SAMPLE_RATE,
        "segment_samples": SEGMENT_SAMPLES,
        "n_fft": N_FFT,
        "hop_length": HOP_LENGTH,
        "n_mfcc": N_MFCC,
    }

# The pre-trained front-end (musicnn's MSD model, core.frontend) reads its own log-mel patches: the audio
# it was trained on was resampled to 16 kHz, and these are the frames its weights expect.
FRONTEND_SAMPLE_RATE = 16_000
FRONTEND_N_FFT = 512
FRONTEND_HOP_LENGTH = 256
FRONTEND_N_MELS = 96
FRONTEND_PATCH_FRAMES = 187
"""Frames per patch: 3 s at 16 kHz with a 256-sample hop, as the network was trained."""
FRONTEND_LOG_SCALE = 10_000.0
"""Log compression of the mel power: log10(1 + FRONTEND_LOG_SCALE * power), computed in float32."""


def frontend_constants() -> dict[str, float | int]:
    """The constants a front-end artefact must match, as stored inside it."""
    return {
        "sample_rate": FRONTEND_SAMPLE_RATE,
        "n_fft": FRONTEND_N_FFT,
        "hop_length": FRONTEND_HOP_LENGTH,
        "n_mels": FRONTEND_N_MELS,
        "patch_frames": FRONTEND_PATCH_FRAMES,
        "log_scale": FRONTEND_LOG_SCALE,
        "segment_samples": SEGMENT_SAMPLES,
        "segment_sample_rate": SAMPLE_RATE,
    }
