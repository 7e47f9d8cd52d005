"""An audio fingerprint that tells a recording from another of the same sound: landmark pairs of spectral
peaks, in the spirit of Wang's "An Industrial-Strength Audio Search Algorithm" (Shazam, 2003).

Why: the front-end's embeddings of 3-s windows describe how a passage sounds, so two cues of one soundtrack
(or a re-encoded copy and a different take) land close together, and no threshold on them both recognises
excerpts and never calls another track the same (models/similarity.md). Peaks of the spectrogram, paired and
hashed with their frequencies and time gap, survive re-encoding and gain changes, but two different
recordings share almost none of them at one consistent time offset.

A fingerprint is an (n, 2) uint32 array of (hash, frame) landmarks, sorted: `hash` packs the anchor peak's
frequency bin, the target peak's bin and their gap in frames; `frame` is where the anchor lies, in frames
of HOP samples from the start of the (trimmed) clip. A library track is fingerprinted on the sections the
analysis decodes anyway (their start times place them on the track's clock), a query on its whole clip.
A query matches a track when many of their shared hashes agree on one offset between the two clocks.

Pure functions over numpy arrays at SAMPLE_RATE; thresholds chosen with benchmarks/bench_fingerprint.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.constants import SAMPLE_RATE

FINGERPRINT_KIND = "landmark-v1"
"""Names the recipe below; part of the analysis version, so a change re-fingerprints the library."""

N_FFT = 1024
HOP = 512
"""46-ms windows every 23 ms at 22 050 Hz: fine enough to place a peak, coarse enough to stay cheap."""
LOW_BIN = 5
HIGH_BIN = LOW_BIN + 255
"""Peaks are looked for from ~108 Hz to ~5.6 kHz (bins of 21.5 Hz): below, rumble and hum; above, what a
low-bitrate encoder throws away first. 256 bins fit a hash's 8 bits."""
PEAK_FRAMES = 7
PEAK_BINS = 15
"""A peak is the loudest point within +-7 frames (+-160 ms) and +-15 bins (+-320 Hz): about 20 peaks a
second on music, few enough that the strongest survive an encoder, many enough to pair."""
FLOOR_DB = 50.0
"""Peaks more than this below the clip's (or section's) loudest point are ignored: silence and the
encoder's noise floor. Relative, so a gain change moves nothing."""
FAN_OUT = 6
MAX_GAP_FRAMES = 63
MAX_BIN_SPREAD = 96
"""Each anchor is paired with its FAN_OUT nearest later peaks within 63 frames (1.46 s, 6 bits) and 96
bins (2 kHz)."""
OFFSET_SLACK = 1
"""Frames by which two landmarks' offsets may differ and still count as one alignment: the query's frames
start anywhere within a frame of the track's."""


SECTION_FRAMES = 129
"""A library section (3 s) in frames."""
COVER_FRAMES = 65
SECTION_LANDMARKS = 20
"""A track's section is covered by a query that overlaps it for at least 1.5 s (COVER_FRAMES) where the
track has at least SECTION_LANDMARKS landmarks (not a quiet stretch)..."""
SECTION_AGREE = 3
"""...and agrees when at least this many of the track's landmarks there matched at the offset."""


@dataclass(frozen=True)
class FingerprintMatch:
    """How a query's fingerprint matched a track's: `count` landmarks agree on `offset` (seconds the track's
    clock is ahead of the query's, where the excerpt starts in the track)."""

    track_id: int
    count: int
    offset: float


@dataclass(frozen=True)
class Agreement:
    """Of the track's sections a query covers at a match's offset, how many hold agreeing landmarks.

    Why: two cues of one soundtrack can share a passage note for note (an intro, a loop): their landmarks
    then agree on one offset as well as a copy's do, but only within that passage, while a copy or an
    excerpt agrees on every section it overlaps."""

    covered: int
    agreeing: int


def _running_max(x: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """The maximum over [i - radius, i + radius] along `axis` (-inf beyond the ends): log2(width) passes of
    np.maximum, a third of scipy.ndimage.maximum_filter's time on these shapes."""
    x = np.moveaxis(x, axis, -1)
    n, width = x.shape[-1], 2 * radius + 1
    pad = np.full(x.shape[:-1] + (radius,), -np.inf, x.dtype)
    m = np.concatenate([pad, x, pad], axis=-1)
    span = 1
    while 2 * span <= width:  # m[j] = max of the `span` values from j
        m = np.maximum(m[..., :-span], m[..., span:])
        span *= 2
    return np.moveaxis(np.maximum(m[..., :n], m[..., width - span:width - span + n]), -1, axis)


def _power(stretches: np.ndarray) -> np.ndarray:
    """(k, samples) -> (k, frames, bins) power spectra of the analysed band, frames every HOP samples."""
    frames = np.lib.stride_tricks.sliding_window_view(stretches, N_FFT, axis=-1)[:, ::HOP]
    window = np.hanning(N_FFT).astype(np.float32)
    # NumPy's FFT, not SciPy's: SciPy is not in the runtime install (the `descriptors` extra). SciPy's gave
    # the same landmarks on the Debian dev library for 17 against 30 ms of CPU a track.
    spectrum = np.fft.rfft(frames * window, axis=-1)[..., LOW_BIN:HIGH_BIN + 1]
    return spectrum.real ** 2 + spectrum.imag ** 2


def _peaks(power: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stretch, frame, bin) of the local maxima of each stretch's spectrogram, in time order per stretch."""
    floor = power.max(axis=(1, 2), keepdims=True) * 10.0 ** (-FLOOR_DB / 10.0)
    around = _running_max(_running_max(power, PEAK_FRAMES, 1), PEAK_BINS, 2)
    s, t, f = np.nonzero((power == around) & (power > floor) & (power > 0))
    return s, t.astype(np.int64), f.astype(np.int64)


def _pairs(s: np.ndarray, t: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, anchor indices) of each peak paired with its FAN_OUT nearest later peaks of the same
    stretch in the target zone. Peaks must be sorted by (stretch, frame)."""
    hashes, anchors, steps = [], [], []
    for step in range(1, min(FAN_OUT * 4, t.size - 1) + 1):  # later peaks in time order
        gap = t[step:] - t[:-step]
        spread = f[step:] - f[:-step]
        idx = np.nonzero((s[step:] == s[:-step]) & (gap > 0) & (gap <= MAX_GAP_FRAMES)
                         & (np.abs(spread) <= MAX_BIN_SPREAD))[0]
        hashes.append((f[idx] << 14) | (f[idx + step] << 6) | gap[idx])
        anchors.append(idx)
        steps.append(np.full(idx.size, step))
    if not hashes:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64)
    h, a = np.concatenate(hashes), np.concatenate(anchors)
    order = np.lexsort((np.concatenate(steps), a))
    h, a = h[order], a[order]
    keep = np.arange(a.size) - np.searchsorted(a, a, side="left") < FAN_OUT  # each anchor's nearest FAN_OUT
    return h[keep].astype(np.uint32), a[keep]


def _landmarks(stretches: np.ndarray, first_frames: np.ndarray) -> np.ndarray:
    """(n, 2) landmarks of equal-length stretches, each starting at its frame of the clip's clock."""
    if stretches.shape[-1] < N_FFT:
        return np.zeros((0, 2), np.uint32)
    s, t, f = _peaks(_power(np.asarray(stretches, np.float32)))
    h, a = _pairs(s, t, f)
    landmarks = np.stack([h, (t[a] + first_frames[s[a]]).astype(np.uint32)], axis=1)
    return landmarks[np.lexsort((landmarks[:, 1], landmarks[:, 0]))]


def fingerprint(y: np.ndarray) -> np.ndarray:
    """The landmarks of a whole clip (mono float32 at SAMPLE_RATE), frames from its first sample."""
    return _landmarks(np.asarray(y, np.float32)[None, :], np.zeros(1, np.int64))


def fingerprint_sections(sections: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The landmarks of a track's analysed sections ((n, samples) at SAMPLE_RATE), each placed on the
    track's clock by its start (seconds); a section's peaks pair only within it."""
    first = np.round(np.asarray(starts, np.float64) * SAMPLE_RATE / HOP).astype(np.int64)
    return _landmarks(np.atleast_2d(sections), first)


def _by_hash(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, frames) sorted by hash. Fingerprints come sorted (a track's is matched by every /similar
    query of its guild, so it is sorted once, when it is made); others are sorted here."""
    hashes = landmarks[:, 0]
    if hashes.size > 1 and not bool(np.all(hashes[1:] >= hashes[:-1])):
        landmarks = landmarks[np.argsort(hashes, kind="stable")]
    return landmarks[:, 0], landmarks[:, 1].astype(np.int64)


def match(query: np.ndarray, track: np.ndarray, track_id: int = 0) -> FingerprintMatch:
    """The offset most of the query's landmarks agree on in the track, and how many agree (counting
    offsets within OFFSET_SLACK frames of it)."""
    if query.size == 0 or track.size == 0:
        return FingerprintMatch(track_id, 0, 0.0)
    hashes, frames = _by_hash(np.asarray(track, np.uint32).reshape(-1, 2))
    q = np.asarray(query, np.uint32).reshape(-1, 2)
    lo = np.searchsorted(hashes, q[:, 0], side="left")
    hi = np.searchsorted(hashes, q[:, 0], side="right")
    counts = hi - lo
    if not counts.any():
        return FingerprintMatch(track_id, 0, 0.0)
    q_frames = np.repeat(q[:, 1].astype(np.int64), counts)
    starts = np.repeat(lo, counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    offsets = frames[starts + within] - q_frames
    values, tally = np.unique(offsets, return_counts=True)
    # offsets within OFFSET_SLACK of each other count together: a window sum over the sorted offsets
    cum = np.concatenate([[0], np.cumsum(tally)])
    window = (cum[np.searchsorted(values, values + OFFSET_SLACK, side="right")]
              - cum[np.searchsorted(values, values - OFFSET_SLACK, side="left")])
    best = int(window.argmax())
    return FingerprintMatch(track_id, int(window[best]), float(values[best] * HOP / SAMPLE_RATE))


def agreement(query: np.ndarray, track: np.ndarray, found: FingerprintMatch, starts: np.ndarray) -> Agreement:
    """Which of the track's sections (starting at `starts`, seconds, as analysed) the query covers at
    `found`'s offset, and on how many of them landmarks agree."""
    offset = int(round(found.offset * SAMPLE_RATE / HOP))
    q = np.asarray(query, np.uint32).reshape(-1, 2)
    t = np.asarray(track, np.uint32).reshape(-1, 2)
    if q.size == 0 or t.size == 0:
        return Agreement(0, 0)
    # the track's landmarks that agree: same hash as a query landmark, at the offset (within the slack)
    key = (q[:, 0].astype(np.int64) << 32) | (q[:, 1].astype(np.int64) + offset)
    keys = np.sort(np.concatenate([key + d for d in range(-OFFSET_SLACK, OFFSET_SLACK + 1)]))
    track_key = (t[:, 0].astype(np.int64) << 32) | t[:, 1].astype(np.int64)
    pos = np.minimum(np.searchsorted(keys, track_key), keys.size - 1)
    agreed = np.sort(t[keys[pos] == track_key, 1].astype(np.int64))
    frames = np.sort(t[:, 1].astype(np.int64))
    first, last = int(q[:, 1].min()) + offset, int(q[:, 1].max()) + offset
    section = np.round(np.asarray(starts, np.float64) * SAMPLE_RATE / HOP).astype(np.int64)
    lo, hi = np.maximum(section, first), np.minimum(section + SECTION_FRAMES, last + 1)
    landmarks = np.searchsorted(frames, hi) - np.searchsorted(frames, lo)
    agreeing = np.searchsorted(agreed, hi) - np.searchsorted(agreed, lo)
    covered = (hi - lo >= COVER_FRAMES) & (landmarks >= SECTION_LANDMARKS)
    return Agreement(int(covered.sum()), int((covered & (agreeing >= SECTION_AGREE)).sum()))


def within(query: np.ndarray, found: FingerprintMatch, duration: float, *, slack: float) -> bool:
    """Whether the query, placed at `found`'s offset, lies within the track (`duration` seconds, trimmed as
    analysed) give or take `slack` seconds: an excerpt or a copy does; a cue that only shares the other
    track's intro or ending hangs off its start or end (supertux2's call_of_the_winding_path against
    shallow-green's intro: its middle 30 s would start 15 s before shallow-green does)."""
    frames = np.asarray(query, np.uint32).reshape(-1, 2)[:, 1]
    if frames.size == 0:
        return False
    first = found.offset + float(frames.min()) * HOP / SAMPLE_RATE
    last = found.offset + float(frames.max()) * HOP / SAMPLE_RATE
    return first >= -slack and last <= duration + slack

