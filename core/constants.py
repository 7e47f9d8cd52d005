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
"""MFCCs per frame, both for the BiLSTM's sequences and the descriptor set (librosa's default)."""

FRAMES_PER_SEGMENT = 1 + SEGMENT_SAMPLES // HOP_LENGTH
"""130 frames: librosa's centred STFT gives 1 + n // hop frames."""

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
