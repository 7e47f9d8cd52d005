"""Audio features for mood, and the track-level vector the mood model reads.

Emotion in music leans on cues the GTZAN descriptors only hint at: mode (major vs minor), how clearly a key
is stated, how dense and regular the onsets are, loudness and its range, how fast harmony and timbre change.
These are computed here from the segments' audio with one STFT (about 0.2 s for a 60-s track on one core).
Every per-segment column is then averaged over the track, because listeners judged whole one-minute
excerpts, not 3-s slices. Spreads over segments are left out: they depend on how long a stretch the
segments cover (one minute in training, up to a whole song in use), and they did not help (a development
run with fixed hyper-parameters: cross-validated mean R² 0.32 without them, 0.31 with them).

Band limit. The model learns from Emotify's 48 kb/s mp3s, whose spectrum stops near 10 kHz and is coarsely
coded above about 8 kHz; users send full-band audio. Timbre features over the whole band (the shared
MFCCs, roll-off, bandwidth, zero-crossing rate, the top contrast band) move by up to several training
standard deviations when the same music is re-encoded like Emotify, so the mood model reads its own timbre
features from the spectrum below BAND_LIMIT_HZ, and of the shared descriptors only those that do not hinge
on the top of the spectrum (SHARED_DESCRIPTORS). Spectral contrast is left out altogether: its valleys
follow the codec's noise floor (even the 3.2-6.4 kHz band moved by 0.3-0.4 standard deviations).

Level reference. `extra_descriptors` is called with all segments of one clip: the dB floor and chroma's
tuning estimate are the clip's, so a quiet passage is judged against the rest of its track.

All per-segment functions take `audio` of shape (n, samples) at SAMPLE_RATE and return arrays whose first
axis is n.
"""
from __future__ import annotations

import numpy as np

from core.audio import Segments
from core.constants import HOP_LENGTH, N_FFT, N_MFCC, SAMPLE_RATE
from core.features import DESCRIPTOR_NAMES, SegmentFeatures

# Krumhansl & Kessler (1982) probe-tone key profiles, C first.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

BAND_LIMIT_HZ = 8000.0
N_MELS = 64
MIN_BPM, MAX_BPM = 40.0, 200.0
"""Lags searched for a pulse in the onset envelope's autocorrelation."""
TOP_DB = 80.0
EPS = 1e-10

SHARED_DESCRIPTORS: tuple[str, ...] = (
    "chroma_stft_mean", "chroma_stft_var", "rms_mean", "rms_var", "harmony_var", "perceptr_var", "tempo",
)
"""The shared descriptors mood reads: level, harmonic/percussive energy, chroma spread and tempo."""
SHARED_COLUMNS: tuple[int, ...] = tuple(DESCRIPTOR_NAMES.index(name) for name in SHARED_DESCRIPTORS)
LOG_SHARED = frozenset({"chroma_stft_var", "rms_mean", "rms_var", "harmony_var", "perceptr_var"})
"""Shared columns spanning orders of magnitude: the model reads their logarithm."""

KEY_NAMES: tuple[str, ...] = ("key_major_corr", "key_minor_corr", "key_mode", "key_clarity")
"""Best correlation with a major and a minor key profile, their difference (> 0 leans major), the best."""

EXTRA_NAMES: tuple[str, ...] = (
    *KEY_NAMES,
    "chroma_flux", "onset_rate", "flux_mean", "flux_std", "pulse_clarity",
    "loudness_db", "loudness_range_db", "low_energy_ratio",
    "centroid", "bandwidth", "rolloff", "flatness_db",
    *(f"mfcc{i}_mean" for i in range(1, N_MFCC + 1)),
    *(f"log_mfcc{i}_var" for i in range(1, N_MFCC + 1)),
    *(f"mfcc{i}_delta" for i in range(1, N_MFCC + 1)),
)
"""Per-segment mood features, in the column order of `extra_descriptors` (timbre below BAND_LIMIT_HZ)."""

SEGMENT_NAMES: tuple[str, ...] = (
    *(f"log_{n}" if n in LOG_SHARED else n for n in SHARED_DESCRIPTORS),
    *EXTRA_NAMES,
)
TRACK_FEATURE_NAMES: tuple[str, ...] = (
    *(f"{name}_mean" for name in SEGMENT_NAMES),
    *(f"track_{name}" for name in KEY_NAMES),
)
"""Columns of `track_vector`: segment means, then key features of the whole track's chroma."""


def key_features(chroma: np.ndarray) -> np.ndarray:
    """Key-profile correlations of chroma vectors (n, 12) -> (n, 4) in KEY_NAMES order.

    Pearson correlation with the 12 rotations of each profile; a flat chroma (silence, noise) gives zeros.
    """
    chroma = np.atleast_2d(chroma).astype(np.float64)
    rotations = np.arange(12)[None, :] - np.arange(12)[:, None]  # [k, p] = p - k: pitch class p in key k

    def best(profile: np.ndarray) -> np.ndarray:
        keys = profile[rotations % 12]  # (12 keys, 12 pitch classes)
        keys = (keys - keys.mean(axis=1, keepdims=True)) / keys.std(axis=1, keepdims=True)
        centred = chroma - chroma.mean(axis=1, keepdims=True)
        scale = chroma.std(axis=1, keepdims=True)
        z = np.divide(centred, scale, out=np.zeros_like(centred), where=scale > EPS)
        return (z @ keys.T / 12.0).max(axis=1)

    major, minor = best(MAJOR_PROFILE), best(MINOR_PROFILE)
    return np.stack([major, minor, major - minor, np.maximum(major, minor)], axis=1)


def _pulse_clarity(onset: np.ndarray) -> np.ndarray:
    """Highest normalised autocorrelation of the onset envelope at tempo lags: how regular the beat is."""
    fps = SAMPLE_RATE / HOP_LENGTH
    lo, hi = int(np.floor(60.0 / MAX_BPM * fps)), int(np.ceil(60.0 / MIN_BPM * fps))
    centred = onset - onset.mean(axis=1, keepdims=True)
    n_frames = centred.shape[1]
    spectrum = np.fft.rfft(centred, n=2 * n_frames, axis=1)
    ac = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :n_frames]
    ac = ac / np.arange(n_frames, 0, -1)  # unbiased: long lags overlap less
    zero_lag = ac[:, :1]
    normalised = np.divide(ac, zero_lag, out=np.zeros_like(ac), where=zero_lag > EPS)
    return normalised[:, lo:min(hi, n_frames - 1) + 1].max(axis=1)


def _mean_log_var(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment mean and log variance over frames of (n, k, frames) -> two (n, k)."""
    return x.mean(axis=2), np.log(x.var(axis=2) + EPS)


def extra_descriptors(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mood features per segment, (n, len(EXTRA_NAMES)) float64, and each segment's mean chroma (n, 12).

    `audio` (n, samples) holds all segments of one clip. The chroma is returned so the whole track's key
    can be judged without another STFT.
    """
    import librosa

    audio = np.atleast_2d(audio)
    sr = SAMPLE_RATE
    magnitude = np.abs(librosa.stft(audio, n_fft=N_FFT, hop_length=HOP_LENGTH))
    power = magnitude**2
    seconds = audio.shape[1] / sr
    freqs = librosa.fft_frequencies(sr=sr, n_fft=N_FFT)
    band = freqs <= BAND_LIMIT_HZ
    mag_band, freqs_band = magnitude[:, band, :], freqs[band]

    chroma = librosa.feature.chroma_stft(S=power, sr=sr)  # (n, 12, t)
    chroma_mean = chroma.mean(axis=2)
    chroma_flux = np.abs(np.diff(chroma, axis=2)).sum(axis=1).mean(axis=1)

    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=N_MELS, fmax=BAND_LIMIT_HZ)
    log_mel = librosa.power_to_db(mel, top_db=TOP_DB)  # floor: the clip's loudest bin - 80 dB
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=N_MFCC)  # (n, N_MFCC, t)
    mfcc_mean, mfcc_log_var = _mean_log_var(mfcc)
    mfcc_delta = np.abs(np.diff(mfcc, axis=2)).mean(axis=2)

    onset = librosa.onset.onset_strength(S=log_mel, sr=sr)  # (n, t): spectral flux of the log-mel spectrum
    onset_rate = np.array([
        librosa.onset.onset_detect(onset_envelope=env, sr=sr, hop_length=HOP_LENGTH).size / seconds
        for env in onset
    ])

    rms = librosa.feature.rms(S=magnitude, frame_length=N_FFT)[:, 0, :]
    rms_db = 20.0 * np.log10(rms + EPS)
    p5, p95 = np.percentile(rms_db, [5, 95], axis=1)
    low_energy = (rms < rms.mean(axis=1, keepdims=True)).mean(axis=1)

    centroid = librosa.feature.spectral_centroid(S=mag_band, freq=freqs_band)[:, 0, :]
    bandwidth = librosa.feature.spectral_bandwidth(S=mag_band, freq=freqs_band)[:, 0, :]
    rolloff = librosa.feature.spectral_rolloff(S=mag_band, freq=freqs_band)[:, 0, :]
    flatness = librosa.feature.spectral_flatness(S=mag_band)[:, 0, :]

    columns = [
        key_features(chroma_mean),
        np.stack([chroma_flux, onset_rate, onset.mean(axis=1), onset.std(axis=1), _pulse_clarity(onset),
                  rms_db.mean(axis=1), p95 - p5, low_energy,
                  centroid.mean(axis=1), bandwidth.mean(axis=1), rolloff.mean(axis=1),
                  10.0 * np.log10(flatness + EPS).mean(axis=1)], axis=1),
        mfcc_mean,
        mfcc_log_var,
        mfcc_delta,
    ]
    return np.concatenate(columns, axis=1).astype(np.float64), chroma_mean.astype(np.float64)


def segment_table(descriptors: np.ndarray, extras: np.ndarray) -> np.ndarray:
    """Per-segment columns in SEGMENT_NAMES order: the shared descriptors mood reads (log where listed),
    then the extras."""
    shared = np.array(np.atleast_2d(descriptors)[:, SHARED_COLUMNS], dtype=np.float64)
    for k, name in enumerate(SHARED_DESCRIPTORS):
        if name in LOG_SHARED:
            shared[:, k] = np.log(np.maximum(shared[:, k], 0.0) + EPS)
    return np.concatenate([shared, extras], axis=1)


def track_vector(table: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """Track-level vector in TRACK_FEATURE_NAMES order from a segment table and the segments' chroma (n, 12).

    Segments have equal length, so the mean of their chroma is the whole track's chroma.
    """
    return np.concatenate([table.mean(axis=0), key_features(chroma.mean(axis=0))[0]])


def track_features(segments: Segments, features: SegmentFeatures) -> np.ndarray:
    """The mood model's input for one clip: (len(TRACK_FEATURE_NAMES),) float64."""
    extras, chroma = extra_descriptors(segments.audio)
    return track_vector(segment_table(features.descriptors, extras), chroma)
