"""Features per 3-s segment, vectorised over segments.

Families (see SegmentFeatures, which computes each when a model first reads it):
- the pre-trained front-end's embeddings (core.frontend), which the genre BiLSTM, mood and similarity read;
- `descriptors`: the seed's 57 descriptors, computed exactly as the published GTZAN tables were (librosa's
  defaults at 22 050 Hz, as librosa 0.7 had them), so that models trained on those tables are valid on audio
  we analyse ourselves. A parity test against the published rows guards this.

librosa's level-dependent steps (the 80-dB floor of `power_to_db`, chroma's tuning estimate) look at
whatever array they are given, so a batch would make one segment's features depend on its neighbours'
loudness. Here they look either at each segment alone (the default, as the 3-s table was made, one file
per segment) or at the clip (`reference="clip"`, what `extract` uses: the
30-s table was computed on whole tracks, and pooling clip-referenced segments reproduces it; see
`Reference`).

Speed: one STFT per segment feeds every spectral feature, the MFCCs, the onset envelope for the tempo and the
harmonic/percussive separation. HPSS's two median filters run through SciPy's fast one-dimensional rank
filter (bit-identical to librosa's `ndimage.median_filter` call; see `_median_filter`), and the tempo comes
from the tempogram alone (the beat tracker's dynamic programme only places beats, which we do not use).

All functions take `segments` of shape (n, samples) and return arrays whose first axis is n.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Literal

import numpy as np

from core.audio import Segments
from core.constants import HOP_LENGTH, N_FFT, N_MFCC, SAMPLE_RATE
from core.errors import MissingExtra
from core.extras import install_command, missing

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
current default (zeros) moves MFCC-1 variance by 2 % on the parity fixture, reflection reproduces it."""

TOP_DB = 80.0
"""`power_to_db`'s floor below the loudest mel bin of the segment or the clip (librosa's default)."""

HPSS_KERNEL = 31
"""librosa's default median-filter width for HPSS, in frames (harmonic) and bins (percussive)."""


def require_descriptor_libraries() -> None:
    """Raise MissingExtra (one line with the pip command) unless librosa and SciPy are installed. Loaders of
    the models that read descriptors call it when they load, so an install without them learns it at
    start-up, not in the middle of a request. It looks for the packages without importing them (librosa's
    import is slow)."""
    absent = missing("librosa", "scipy")
    if absent:
        raise MissingExtra(f"the descriptor features need {' and '.join(absent)}, which the runtime install "
                           f"leaves out: {install_command('descriptors')}")


Reference = Literal["segment", "clip"]
"""Where librosa's level-dependent steps (the 80-dB floor under the loudest mel bin, chroma's tuning
estimate) look: at each segment alone ("segment": as the 3-s tables were made, one file per segment), or at
all segments of the batch together ("clip": as the 30-s table was made, on the whole track, so that
aggregating segment statistics over a clip reproduces that table; see core.genre.descriptor.aggregate)."""


@dataclass(frozen=True)
class _Spectra:
    """What one STFT pass gives every feature of a batch of segments."""

    stft: np.ndarray       # (n, 1 + N_FFT // 2, frames) complex64
    magnitude: np.ndarray  # (n, 1 + N_FFT // 2, frames) float32
    mel_db: np.ndarray     # (n, 128, frames) power mel spectrogram in dB, not yet floored

    def log_mel(self, reference: Reference) -> np.ndarray:
        """librosa.power_to_db(ref=1, amin=1e-10, top_db=80), floored under the loudest bin of each segment
        or of the whole batch."""
        axes = tuple(range(1 if reference == "segment" else 0, self.mel_db.ndim))
        return np.maximum(self.mel_db, self.mel_db.max(axis=axes, keepdims=True) - TOP_DB)


@lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT)


def _spectra(segments: np.ndarray) -> _Spectra:
    import librosa

    stft = librosa.stft(segments, n_fft=N_FFT, hop_length=HOP_LENGTH, pad_mode=PAD_MODE)
    magnitude = np.abs(stft)
    mel = np.einsum("mf,nft->nmt", _mel_basis(), magnitude**2, optimize=True)
    return _Spectra(stft=stft, magnitude=magnitude, mel_db=10.0 * np.log10(np.maximum(1e-10, mel)))


def _mfcc(log_mel: np.ndarray) -> np.ndarray:
    """(n, N_MFCC, frames): librosa.feature.mfcc's DCT-II (orthonormal) of the log-mel spectrogram."""
    import scipy.fft

    return scipy.fft.dct(log_mel, axis=-2, type=2, norm="ortho")[..., :N_MFCC, :]


def _mean_var(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance over every axis but the first (as numpy's defaults in the seed)."""
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    return flat.mean(axis=1), flat.var(axis=1)


def _median_filter(x: np.ndarray, width: int, axis: int) -> np.ndarray:
    """`scipy.ndimage.median_filter(x, size=width along axis, mode="reflect")`, about 8x faster.

    SciPy only takes its fast 1-D rank-filter path for 1-D input, so every line along `axis` is padded the
    way mode="reflect" pads it (numpy's "symmetric"), the lines are laid end to end, filtered once and cut
    out again; each output's window lies inside its own padded line, so the result is bit-identical.
    """
    import scipy.ndimage

    lines = np.moveaxis(x, axis, -1)
    half = width // 2
    padded = np.pad(lines, [(0, 0)] * (lines.ndim - 1) + [(half, half)], mode="symmetric")
    filtered = scipy.ndimage.median_filter(padded.reshape(-1), size=width, mode="reflect")
    out = filtered.reshape(padded.shape)[..., half:half + lines.shape[-1]]
    return np.moveaxis(out, -1, axis)


def _hpss_stats(segments: np.ndarray, spectra: _Spectra) -> list[np.ndarray]:
    """Mean and variance of librosa.effects.hpss's harmonic and percussive waveforms (librosa 0.7).

    Masks as in librosa.decompose.hpss (margin 1: Wiener power 2, an even split where both filters are 0).
    That librosa inverted the STFT without `length` and zero-padded the result to the input's length
    (`fix_length`), so the statistics count the padding too. The percussive waveform is the signal minus
    the harmonic one: the two soft masks sum to one, the inverse STFT is linear and inverts our STFT
    exactly on the samples it returns (one inverse STFT instead of two).
    """
    import librosa

    magnitude = spectra.magnitude
    harm = _median_filter(magnitude, HPSS_KERNEL, axis=-1)
    perc = _median_filter(magnitude, HPSS_KERNEL, axis=-2)
    harm, perc = harm * harm, perc * perc
    total = harm + perc
    mask = np.where(total > 0, harm / np.where(total > 0, total, 1), np.float32(0.5))
    y_harm = librosa.istft(spectra.stft * mask, hop_length=HOP_LENGTH, dtype=np.float32)
    y_perc = segments[:, : y_harm.shape[-1]] - y_harm
    n = segments.shape[-1]
    stats: list[np.ndarray] = []
    for y in (y_harm.astype(np.float64), y_perc.astype(np.float64)):
        mean = y.sum(axis=-1) / n
        stats.extend((mean, (y**2).sum(axis=-1) / n - mean**2))
    return stats


def _tempo(log_mel: np.ndarray) -> np.ndarray:
    """Tempo (BPM) per segment as librosa.beat.beat_track reports it: the tempogram's prior-weighted peak of
    the onset envelope of the segment's log-mel spectrogram; 0 where there is no onset at all."""
    import librosa

    envelope = librosa.onset.onset_strength(S=log_mel, sr=SAMPLE_RATE)
    bpm = librosa.feature.tempo(onset_envelope=envelope, sr=SAMPLE_RATE, hop_length=HOP_LENGTH)
    return np.where(envelope.any(axis=-1), bpm.reshape(-1), 0.0)


def tempo(segments: np.ndarray) -> np.ndarray:
    """Beat-tracker tempo per segment, BPM, (n,)."""
    return _tempo(_spectra(np.atleast_2d(segments)).log_mel("segment"))


def _chroma(spectra: _Spectra, reference: Reference) -> np.ndarray:
    """chroma_stft, with one tuning estimate per segment or one for the batch."""
    import librosa

    power = spectra.magnitude**2
    if reference == "clip":
        tuning = _tuning(power)
        return librosa.feature.chroma_stft(S=power, sr=SAMPLE_RATE, tuning=tuning)
    return np.stack([librosa.feature.chroma_stft(S=p, sr=SAMPLE_RATE, tuning=_tuning(p)) for p in power])


def _tuning(power: np.ndarray) -> float:
    """librosa.estimate_tuning as chroma_stft calls it, but 0 (not a warning) when nothing has a pitch."""
    import librosa

    pitch, magnitude = librosa.piptrack(S=power, sr=SAMPLE_RATE)
    voiced = pitch > 0
    if not voiced.any():
        return 0.0
    chosen = pitch[(magnitude >= np.median(magnitude[voiced])) & voiced]
    return float(librosa.pitch_tuning(chosen, bins_per_octave=12))


@lru_cache(maxsize=1)
def _fft_frequencies() -> np.ndarray:
    import librosa

    return librosa.fft_frequencies(sr=SAMPLE_RATE, n_fft=N_FFT)


def _spectral_shape(magnitude: np.ndarray) -> list[np.ndarray]:
    """Centroid, bandwidth and 85 % roll-off per frame, (n, frames) each, as librosa.feature computes them
    (same normalisation, same cumulative-sum threshold) but sharing one normalised spectrum: 4x faster."""
    freq = _fft_frequencies()
    total = magnitude.sum(axis=-2, keepdims=True)
    weights = magnitude / np.where(total > np.finfo(magnitude.dtype).tiny, total, 1)
    centroid = np.einsum("f,nft->nt", freq, weights)
    deviation = freq[None, :, None] - centroid[:, None, :]
    bandwidth = np.sqrt(np.einsum("nft,nft->nt", weights, deviation**2))
    cumulative = np.cumsum(magnitude, axis=-2)
    rolloff = freq[np.argmax(cumulative >= 0.85 * cumulative[:, -1:, :], axis=-2)]
    return [centroid, bandwidth, rolloff]


def _descriptors(segments: np.ndarray, spectra: _Spectra, reference: Reference) -> np.ndarray:
    import librosa

    log_mel = spectra.log_mel(reference)
    per_frame = [
        _chroma(spectra, reference),
        librosa.feature.rms(y=segments, pad_mode=PAD_MODE),
        *_spectral_shape(spectra.magnitude),
        librosa.feature.zero_crossing_rate(segments),
    ]
    columns: list[np.ndarray] = []
    for values in per_frame:
        columns.extend(_mean_var(values))
    columns.extend(_hpss_stats(segments, spectra))
    columns.append(_tempo(log_mel))
    mfcc = _mfcc(log_mel)
    for i in range(N_MFCC):
        columns.extend(_mean_var(mfcc[:, i, :]))
    return np.stack(columns, axis=1)


def descriptors(segments: np.ndarray, *, reference: Reference = "segment") -> np.ndarray:
    """The 57 seed descriptors per segment, (n, 57) float64, in `DESCRIPTOR_NAMES` order.

    `reference="segment"` (default) reproduces the published 3-s table row of each segment; pass "clip" when
    the segments are consecutive pieces of one recording whose statistics will be pooled (see `Reference`).
    """
    require_descriptor_libraries()
    segments = np.atleast_2d(segments)
    return _descriptors(segments, _spectra(segments), reference)


class SegmentFeatures:
    """Everything the models read about one clip, each family computed the first time a model asks for it
    and then shared: genre, mood and embedding read one front-end pass, and the descriptors (an STFT, HPSS
    and a tempogram per segment) are paid for only when a model that reads them is loaded.

    - `embeddings` (n, 200) float32 and `tags` (n, 50): the front-end's outputs (core.frontend);
    - `descriptors` (n, 57) float64 in DESCRIPTOR_NAMES order, with the clip as level reference (they are
      pooled into track and section statistics);
    - `starts` (n,) segment start times in seconds, `clip_seconds` the analysed (trimmed) clip's length.
    """

    def __init__(self, segments: Segments | None, *, frontend: Callable[[np.ndarray], dict[str, np.ndarray]]
                 | None = None, starts: np.ndarray | None = None, clip_seconds: float | None = None,
                 **precomputed: np.ndarray) -> None:
        """From `segments` (and the loaded `frontend`, if any model reads embeddings); or, for tests and
        caches, from `starts`, `clip_seconds` and precomputed families (descriptors=..., embeddings=...)."""
        self._segments = segments
        self._frontend = frontend
        self.starts = segments.starts if segments is not None else np.asarray(starts)
        self.clip_seconds = segments.clip_seconds if segments is not None else float(clip_seconds or 0.0)
        unknown = set(precomputed) - {"descriptors", "embeddings", "tags"}
        if unknown:
            raise TypeError(f"unknown feature families {sorted(unknown)}")
        self.__dict__.update(precomputed)

    def __len__(self) -> int:
        return int(len(self.starts))

    def _audio(self) -> np.ndarray:
        if self._segments is None:
            raise ValueError("these features were made from arrays, not audio: the family asked for is missing")
        return np.atleast_2d(self._segments.audio)

    @cached_property
    def _spectra(self) -> _Spectra:
        return _spectra(self._audio())

    @cached_property
    def descriptors(self) -> np.ndarray:
        require_descriptor_libraries()
        return _descriptors(self._audio(), self._spectra, "clip")

    @cached_property
    def _frontend_outputs(self) -> dict[str, np.ndarray]:
        if self._frontend is None:
            raise ValueError("no front-end was given, so there are no embeddings")
        return self._frontend(self._audio())

    @cached_property
    def embeddings(self) -> np.ndarray:
        return self._frontend_outputs["penultimate"]

    @cached_property
    def tags(self) -> np.ndarray:
        return self._frontend_outputs["tags"]

    def computed(self) -> list[str]:
        """The families computed (or given) so far, for logs and benchmarks."""
        frontend = any(k in self.__dict__ for k in ("_frontend_outputs", "embeddings", "tags"))
        return (["descriptors"] if "descriptors" in self.__dict__ else []) + (["embeddings"] if frontend else [])


def extract(segments: Segments, frontend: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None
            ) -> SegmentFeatures:
    """The features of a clip's segments; each family is computed when first read (see SegmentFeatures)."""
    return SegmentFeatures(segments, frontend=frontend)
