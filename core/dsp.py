"""The few signal-processing steps the default analysis needs, in NumPy and soxr, without librosa.

librosa pulls numba, llvmlite, SciPy and scikit-learn (over 400 MB installed), and the default path (decode,
trim, resample, the front-end's log-mel) uses six of its functions. These are those functions, written to
give librosa 0.11's results with the arguments we call them with (tests/test_dsp.py holds them to librosa on
real audio): the same frames, padding, window and filter formulas, in the same dtypes. librosa stays in the
`descriptors` extra for the descriptor features (core.features), which need much more of it.

Signatures follow librosa's (keyword arguments, the same names and defaults for the parts we use), so a call
site swaps `librosa.x(...)` for `dsp.x(...)` unchanged; `stft_power` is the one that is not librosa's: the
front-end's power spectrogram (librosa.stft's, squared, frames first) made in one pass, to the same bits.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import soxr

RESAMPLE_QUALITY = "HQ"
"""soxr's high quality: what librosa's default `res_type="soxr_hq"` asks soxr for."""
SOXR_MAX_CHANNELS = 65_536
"""The most channels python-soxr takes in one call."""


def resample(y: np.ndarray, *, orig_sr: int, target_sr: int, axis: int = -1) -> np.ndarray:
    """librosa.resample(y, orig_sr=, target_sr=, res_type="soxr_hq", axis=): soxr along `axis`, cut or
    zero-padded to ceil(n * target_sr / orig_sr) samples, in y's dtype.

    librosa resamples one line along `axis` at a time (np.apply_along_axis); here every line goes to soxr in
    one call, as the channels of one signal. soxr filters each channel on its own, so the samples are the
    same to the bit, and lines already contiguous along `axis` (a batch of segments) are read in place
    (soxr's "split" layout): 16 segments cost 7.8 against 9.7 ms."""
    if orig_sr == target_sr:
        return y
    n_samples = int(np.ceil(y.shape[axis] * float(target_sr) / orig_sr))
    if y.size == 0:  # nothing to filter (a file that decodes to no samples): the caller says why
        shape = list(y.shape)
        shape[axis] = n_samples
        return np.zeros(shape, dtype=y.dtype)
    lines = np.moveaxis(np.asarray(y), axis, 0)
    channels = np.asfortranarray(lines.reshape(lines.shape[0], -1))  # (samples, lines), each line contiguous
    calls = [soxr.resample(channels[:, i:i + SOXR_MAX_CHANNELS], orig_sr, target_sr, quality=RESAMPLE_QUALITY)
             for i in range(0, channels.shape[1], SOXR_MAX_CHANNELS)]
    resampled = calls[0] if len(calls) == 1 else np.concatenate(calls, axis=1)
    resampled = np.moveaxis(resampled.reshape(resampled.shape[:1] + lines.shape[1:]), 0, axis)
    return np.asarray(fix_length(resampled, size=n_samples, axis=axis), dtype=y.dtype)


def fix_length(y: np.ndarray, *, size: int, axis: int = -1) -> np.ndarray:
    """`y` cut to `size` samples along `axis`, or zero-padded at its end to reach it (as
    librosa.util.fix_length)."""
    n = y.shape[axis]
    if n > size:
        index = [slice(None)] * y.ndim
        index[axis] = slice(0, size)
        return y[tuple(index)]
    if n < size:
        padding = [(0, 0)] * y.ndim
        padding[axis] = (0, size - n)
        return np.pad(y, padding)
    return y


def frame(y: np.ndarray, *, frame_length: int, hop_length: int) -> np.ndarray:
    """(..., samples) -> (..., frame_length, frames), a strided view, as librosa.util.frame lays it out."""
    if y.shape[-1] < frame_length:
        raise ValueError(f"input is too short ({y.shape[-1]} samples) for frames of {frame_length}")
    windows = np.lib.stride_tricks.sliding_window_view(y, frame_length, axis=-1)
    return np.moveaxis(windows, -1, -2)[..., ::hop_length]


def hann(n: int) -> np.ndarray:
    """The periodic ("fftbins") Hann window of n points, float64: the first n of a symmetric window of n + 1,
    computed as scipy.signal.get_window("hann", n) does, to its last bit."""
    return (0.5 + 0.5 * np.cos(np.linspace(-np.pi, np.pi, n + 1)))[:n]


def stft_power(y: np.ndarray, *, n_fft: int = 2048, hop_length: int | None = None) -> np.ndarray:
    """|librosa.stft(y)|**2 for float32 `y` (centred, zero-padded frames, periodic Hann window), frames first:
    (..., frames, 1 + n_fft // 2) float32, to the bit `stft.real**2 + stft.imag**2` of librosa's complex64
    STFT: float32 frames times the float64 window, numpy's FFT in float64, rounded to complex64, squared
    and summed in float32.

    librosa transforms a (n_fft, frames) strided view down its columns, and holds the whole batch's float64
    windowed frames and complex128 spectrum at once (12 MB each for the front-end's 16 segments). Here each
    line is centred in one reused buffer, its frames are windowed into another and transformed along their
    rows: the same operations in the same dtypes. With the mel product and the log, the front-end's 16
    segments took 7.7-8.6 against 13.2-15.1 ms (one thread, loaded machine)."""
    hop_length = n_fft // 4 if hop_length is None else hop_length
    y = np.asarray(y, np.float32)
    lines = y.reshape(-1, y.shape[-1])
    centred = np.zeros(lines.shape[-1] + 2 * (n_fft // 2), np.float32)  # one line between its zeros
    frames = frame(centred, frame_length=n_fft, hop_length=hop_length).T  # (frames, n_fft) view of it
    window = hann(n_fft)
    power = np.empty((lines.shape[0],) + frames.shape[:1] + (1 + n_fft // 2,), np.float32)
    windowed = np.empty(frames.shape)  # float64: librosa's window is, and numpy multiplies in the wider
    rounded = np.empty(power.shape[1:], np.complex64)  # the complex64 that librosa's STFT returns
    squares = rounded.view(np.float32)  # (frames, 2 * bins): real, imaginary, real, ...
    for line, out in zip(lines, power):
        centred[n_fft // 2:n_fft // 2 + line.size] = line
        np.copyto(windowed, frames)  # widened first: a float64 product of two float64s runs 1.4x faster
        np.multiply(windowed, window, out=windowed)
        np.copyto(rounded, np.fft.rfft(windowed, axis=-1), casting="same_kind")
        np.square(squares, out=squares)
        np.add(squares[:, 0::2], squares[:, 1::2], out=out)
    return power.reshape(y.shape[:-1] + power.shape[1:])


def _hz_to_mel(frequencies: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    f_sp = 200.0 / 3
    mels = frequencies / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    high = frequencies >= min_log_hz
    mels[high] = min_log_mel + np.log(frequencies[high] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    high = mels >= min_log_mel
    freqs[high] = min_log_hz * np.exp(logstep * (mels[high] - min_log_mel))
    return freqs


def mel_filters(*, sr: float, n_fft: int, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None,
                dtype: type = np.float32) -> np.ndarray:
    """librosa.filters.mel's default bank: (n_mels, 1 + n_fft // 2) triangles on Slaney's mel scale between
    fmin and fmax (default sr / 2), each scaled to unit area ("slaney" norm)."""
    fmax = float(sr) / 2 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.asarray([fmin], float))[0],
                                   _hz_to_mel(np.asarray([fmax], float))[0], n_mels + 2))
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, fft_freqs)
    weights = np.zeros((n_mels, len(fft_freqs)), dtype=dtype)
    for i in range(n_mels):
        lower = -ramps[i] / widths[i]
        upper = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:n_mels + 2] - edges[:n_mels]))[:, np.newaxis]
    return weights


RMS_BLOCK_HOPS = 64
"""Hops squared at a time by `rms`: 32 768 samples, a 256-KiB float64 buffer that stays in the cache."""


def rms(*, y: np.ndarray, frame_length: int = 2048, hop_length: int = 512, center: bool = True) -> np.ndarray:
    """librosa.feature.rms from samples: (..., 1, frames) float32 root mean square of each frame, for frames
    that are a whole number of hops (the trim's 2048 and 512); centred frames are zero-padded.

    Each sample is squared once, the squares summed per hop in float64, and a frame's sum is that of its
    hops: 2-3x faster than squaring every sample once per frame it lies in (a whole 7-minute file took 66
    ms). It differs from librosa's float32 mean by ~1e-7 relatively (tests/test_dsp.py holds it to 1e-6);
    the trim found the same bounds with both on all 218 tracks of the two dev libraries.

    The squares are taken RMS_BLOCK_HOPS hops at a time into one reused buffer, and the centring zeros are
    written into it rather than padded onto a copy of `y`: a whole 3-minute file otherwise needed a 16-MB
    padded copy and 32 MB of squares, mapped and faulted afresh (its trim: 35-39 against 9.5-9.9 ms, the
    heap handed back between runs as a worker does). Each hop's sum is the same sum of the same squares."""
    if frame_length % hop_length:
        raise ValueError(f"frames of {frame_length} samples are not whole hops of {hop_length}")
    n, left = y.shape[-1], frame_length // 2 if center else 0
    if n + 2 * left < frame_length:
        raise ValueError(f"input is too short ({n + 2 * left} samples) for frames of {frame_length}")
    n_frames = 1 + (n + 2 * left - frame_length) // hop_length
    per_frame = frame_length // hop_length
    hops = n_frames + per_frame - 1
    hop_sums = np.empty(y.shape[:-1] + (hops,))
    squares = np.empty(y.shape[:-1] + (min(hops, RMS_BLOCK_HOPS) * hop_length,))
    for first in range(0, hops, RMS_BLOCK_HOPS):
        count = min(RMS_BLOCK_HOPS, hops - first)
        start, stop = first * hop_length - left, (first + count) * hop_length - left  # y's samples
        block = squares[..., :count * hop_length]
        lo, hi = max(start, 0), min(stop, n)  # the part of the block inside y
        if (lo, hi) != (start, stop):
            block.fill(0.0)  # the centring zeros at either end
        if lo < hi:
            np.square(y[..., lo:hi], out=block[..., lo - start:hi - start], dtype=np.float64)
        np.sum(block.reshape(*block.shape[:-1], count, hop_length), axis=-1,
               out=hop_sums[..., first:first + count])
    sums = hop_sums[..., :n_frames].copy()
    for k in range(1, per_frame):
        sums += hop_sums[..., k:k + n_frames]
    return np.sqrt(sums / frame_length).astype(np.float32)[..., np.newaxis, :]


def amplitude_to_db(S: np.ndarray, *, ref: float | Callable[[np.ndarray], float] = 1.0, amin: float = 1e-5,
                    top_db: float | None = 80.0) -> np.ndarray:
    """librosa.amplitude_to_db: 20 log10(|S| / ref), with |S| and ref floored at `amin`, and everything more
    than `top_db` under the loudest value raised to that floor (None: no floor)."""
    magnitude = np.abs(np.asarray(S))
    ref_value = ref(magnitude) if callable(ref) else np.abs(ref)
    power = np.square(magnitude, out=magnitude)
    db = 10.0 * np.log10(np.maximum(amin**2, power))
    db -= 10.0 * np.log10(np.maximum(amin**2, ref_value**2))
    if top_db is not None:
        db = np.maximum(db, db.max() - top_db)
    return db


def trim(y: np.ndarray, *, top_db: float = 60, frame_length: int = 2048, hop_length: int = 512
         ) -> tuple[np.ndarray, np.ndarray]:
    """librosa.effects.trim for mono audio: drop the leading and trailing frames whose RMS is more than
    `top_db` under the loudest frame's; returns the kept samples and their [start, end)."""
    db = amplitude_to_db(rms(y=y, frame_length=frame_length, hop_length=hop_length)[..., 0, :], ref=np.max,
                         top_db=None)
    sounding = np.flatnonzero(db > -top_db)
    if sounding.size == 0:
        start, end = 0, 0
    else:
        start = int(sounding[0]) * hop_length
        end = min(y.shape[-1], (int(sounding[-1]) + 1) * hop_length)
    return y[..., start:end], np.asarray([start, end])
