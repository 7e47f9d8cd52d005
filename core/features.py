"""Features per 3-s segment, vectorised over segments.

Two families:
- `mfcc_sequences`: the (frames × MFCC) matrix the BiLSTM reads.
- `descriptors`: the seed's 57 descriptors, computed exactly as the published GTZAN tables were (librosa's
  defaults at 22 050 Hz), so that models trained on those tables are valid on audio we analyse ourselves.
  A parity test against the published rows guards this.

All functions take `segments` of shape (n, samples) and return arrays whose first axis is n.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.audio import Segments

from core.constants import HOP_LENGTH, N_FFT, N_MFCC, SAMPLE_RATE

SPECTRAL_NAMES: tuple[str, ...] = (
    "chroma_stft", "rms", "spectral_centroid", "spectral_bandwidth", "rolloff", "zero_crossing_rate",
    "harmony", "perceptr",
)
DESCRIPTOR_NAMES: tuple[str, ...] = (
    *(f"{name}_{stat}" for name in SPECTRAL_NAMES for stat in ("mean", "var")),
    "tempo",
    *(f"mfcc{i}_{stat}" for i in range(1, N_MFCC + 1) for stat in ("mean", "var")),
)
"""Column names and order of the published GTZAN descriptor tables (57 columns)."""


PAD_MODE = "reflect"
"""Frame padding at the segment edges. The tables were made when librosa padded by reflection; its
current default (zeros) moves MFCC-1 variance by 2 % on the parity fixture, reflection by 0.1 %."""


def _stft_magnitude(segments: np.ndarray) -> np.ndarray:
    import librosa

    return np.abs(librosa.stft(segments, n_fft=N_FFT, hop_length=HOP_LENGTH, pad_mode=PAD_MODE))


def _mfcc_from_magnitude(magnitude: np.ndarray) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(S=magnitude**2, sr=SAMPLE_RATE)
    return librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=N_MFCC)


def mfcc_sequences(segments: np.ndarray) -> np.ndarray:
    """MFCC sequences: (n, FRAMES_PER_SEGMENT, N_MFCC) float32, frames first as an LSTM reads them."""
    mfcc = _mfcc_from_magnitude(_stft_magnitude(np.atleast_2d(segments)))
    return np.ascontiguousarray(np.swapaxes(mfcc, 1, 2), dtype=np.float32)


def _mean_var(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance over every axis but the first (as numpy's defaults in the seed)."""
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    return flat.mean(axis=1), flat.var(axis=1)


def tempo(segments: np.ndarray) -> np.ndarray:
    """Beat-tracker tempo per segment, BPM, (n,). The slowest descriptor after HPSS."""
    import librosa

    onset = librosa.onset.onset_strength(y=segments, sr=SAMPLE_RATE)
    return np.asarray(
        [librosa.beat.beat_track(onset_envelope=env, sr=SAMPLE_RATE)[0] for env in onset], dtype=np.float64
    ).reshape(-1)


def descriptors(segments: np.ndarray) -> np.ndarray:
    """The 57 seed descriptors per segment, (n, 57) float64, in `DESCRIPTOR_NAMES` order."""
    import librosa

    segments = np.atleast_2d(segments)
    sr = SAMPLE_RATE
    magnitude = _stft_magnitude(segments)
    harmonic, percussive = librosa.effects.hpss(segments)
    per_frame = [
        librosa.feature.chroma_stft(S=magnitude**2, sr=sr),
        librosa.feature.rms(y=segments, pad_mode=PAD_MODE),
        librosa.feature.spectral_centroid(S=magnitude, sr=sr),
        librosa.feature.spectral_bandwidth(S=magnitude, sr=sr),
        librosa.feature.spectral_rolloff(S=magnitude, sr=sr),
        librosa.feature.zero_crossing_rate(segments),
        harmonic,
        percussive,
    ]
    columns: list[np.ndarray] = []
    for values in per_frame:
        columns.extend(_mean_var(values))
    columns.append(tempo(segments))
    mfcc = _mfcc_from_magnitude(magnitude)
    for i in range(N_MFCC):
        columns.extend(_mean_var(mfcc[:, i, :]))
    return np.stack(columns, axis=1)


@dataclass(frozen=True)
class SegmentFeatures:
    """Everything the models read about one clip, computed once and shared by genre, mood and embedding.

    `descriptors` (n, 57) float64 in DESCRIPTOR_NAMES order, `mfcc` (n, FRAMES_PER_SEGMENT, N_MFCC) float32,
    `starts` (n,) segment start times in seconds, `clip_seconds` the analysed (trimmed) clip's length.
    """

    descriptors: np.ndarray
    mfcc: np.ndarray
    starts: np.ndarray
    clip_seconds: float

    def __len__(self) -> int:
        return int(self.mfcc.shape[0])


def extract(segments: Segments) -> SegmentFeatures:
    """Both feature families for every segment of a clip."""
    return SegmentFeatures(
        descriptors=descriptors(segments.audio),
        mfcc=mfcc_sequences(segments.audio),
        starts=segments.starts,
        clip_seconds=segments.clip_seconds,
    )
