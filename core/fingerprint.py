"""An audio fingerprint that tells a recording from another of the same sound: landmark pairs of spectral
peaks, in the spirit of Wang's "An Industrial-Strength Audio Search Algorithm" (Shazam, 2003).

Why: the front-end's embeddings of 3-s windows describe how a passage sounds, so two cues of one soundtrack
(or a re-encoded copy and a different take) land close together, and no threshold on them both recognises
excerpts and never calls another track the same (models/similarity.md). Peaks of the spectrogram, paired and
hashed with their frequencies and time gap, survive re-encoding and gain changes, but two different
recordings share almost none of them at one consistent time offset.

A fingerprint is an (n, 2) uint32 array of (key, frame) landmarks, sorted: `key` packs the landmark's hash
(the anchor peak's frequency bin, the target peak's bin and their gap in frames) above the anchor peak's
level (LEVEL_BITS); `frame` is where the anchor lies, in frames of HOP samples from the start of the
(trimmed) clip. A library track is fingerprinted on the sections the
analysis decodes anyway (their start times place them on the track's clock), a query on its whole clip.
A query matches a track when many of their shared hashes agree on one offset between the two clocks.

Why the level: the same piece rendered twice (drascula's track1 and track30: one score, two mixes, lined up
at a constant 17.6-ms lag) puts many peaks where the other does, so its landmarks agree on one offset like a
copy's. What differs is how loud each peak is: a copy keeps every peak's level within a codec's error of the
original, after one gain for the whole clip; another render moves them by the instruments' balance. And a
smaller share of the track's landmarks agree (`Evidence`).

Pure functions over numpy arrays at SAMPLE_RATE; thresholds chosen with benchmarks/bench_fingerprint.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.constants import SAMPLE_RATE

FINGERPRINT_KIND = "landmark-v2"
"""Names the recipe below; part of the analysis version (VERSION_TAG), so a change re-fingerprints the
library, and a track's stored fingerprint is compared with a query's only when it names this kind
(`is_current`): v1 stored no level, and its keys read as v2 would match nothing."""
VERSION_TAG = f"fingerprint={FINGERPRINT_KIND}"

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
LEVEL_BITS = 10
LEVEL_STEP_DB = 0.25
"""The anchor peak's power is kept in quarter-decibel steps in the key's low LEVEL_BITS bits (-128 to
+127.75 dB, clipped; float audio's loudest peak is near +48): fine beside a codec's error of about 1 dB,
and below the hash's 22 bits, so keys sort by hash."""
BLOCK_FRAMES = 128
"""Frames transformed at once (a 3-s section; 1 MiB of float64 frames)."""
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
class Evidence:
    """What else a match's agreeing landmarks say, beyond their count.

    `covered` / `agreeing`: of the track's sections the query covers at the match's offset, how many hold
    agreeing landmarks. Why: two cues of one soundtrack can share a passage note for note (an intro, a
    loop): their landmarks then agree on one offset as well as a copy's do, but only within that passage,
    while a copy or an excerpt agrees on every section it overlaps.

    `density`: the share of the track's landmarks in the covered sections that agree; `level_spread`: how far
    (dB, median absolute deviation) the agreeing anchor peaks' levels in the query stray from the track's,
    after the one gain they share. Why: the same piece rendered twice shares fewer landmarks than a copy
    does and moves their levels (the module's docstring)."""

    covered: int
    agreeing: int
    density: float
    level_spread: float


def _running_max(x: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """The maximum over [i - radius, i + radius] along `axis` (-inf beyond the ends): log2(width) passes of
    np.maximum (a third of scipy.ndimage.maximum_filter's time on these shapes).

    Each pass runs over the whole padded array as one flat line, neighbours along `axis` lying `step`
    elements apart: one long contiguous loop instead of one per row (bins are the last axis, so slices
    along it were 128 short rows), 1.6x faster for a section. A window that runs past the end of its row
    into the next only ever reaches the -inf padding or the values of positions that are not read."""
    n, width = x.shape[axis], 2 * radius + 1
    shape = tuple(size + 2 * radius if d == axis else size for d, size in enumerate(x.shape))
    step = int(np.prod(shape[axis + 1:], dtype=np.int64))
    size = int(np.prod(shape, dtype=np.int64))
    flat = np.full(size + width * step, -np.inf, x.dtype)  # room for the passes' shifts past the end

    def along(start: int, stop: int) -> tuple[slice, ...]:
        return tuple(slice(start, stop) if d == axis else slice(None) for d in range(x.ndim))

    flat[:size].reshape(shape)[along(radius, radius + n)] = x
    span = 1
    while 2 * span <= width:  # flat[j] = max of the `span` values from j along the axis
        flat = np.maximum(flat[:flat.size - span * step], flat[span * step:])
        span *= 2
    m = flat[:size].reshape(shape)
    return np.maximum(m[along(0, n)], m[along(width - span, width - span + n)])


def _power(stretches: np.ndarray) -> np.ndarray:
    """(k, samples) -> (k, frames, bins) float32 power spectra of the analysed band, frames every HOP
    samples. NumPy's FFT, not SciPy's (SciPy is not in the runtime install); in float64, which NumPy
    transforms twice as fast as float32, and BLOCK_FRAMES frames at a time, which stay in the cache: 9
    against 20 ms a track (16 sections) for the same landmarks. The windowed frames and the band's power
    go to buffers reused from block to block: a fresh 1-MiB array a block was mapped and page-faulted anew."""
    frames = np.lib.stride_tricks.sliding_window_view(stretches, N_FFT, axis=-1)[:, ::HOP]
    out = np.empty(frames.shape[:2] + (HIGH_BIN + 1 - LOW_BIN,), np.float32)
    window = np.hanning(N_FFT)
    windowed = np.empty((BLOCK_FRAMES, N_FFT))
    real, imag = np.empty((2, BLOCK_FRAMES, out.shape[-1]))
    for k in range(frames.shape[0]):
        for i in range(0, frames.shape[1], BLOCK_FRAMES):
            block = frames[k, i:i + BLOCK_FRAMES]
            n = block.shape[0]
            np.copyto(windowed[:n], block)  # widened first: a float64 product of float64s runs 1.4x faster
            spectrum = np.fft.rfft(np.multiply(windowed[:n], window, out=windowed[:n]),
                                   axis=-1)[:, LOW_BIN:HIGH_BIN + 1]
            power = np.square(spectrum.real, out=real[:n])
            power += np.square(spectrum.imag, out=imag[:n])
            out[k, i:i + n] = power
    return out


def _peaks(power: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame, bin, level code) of the local maxima of one stretch's (frames, bins) spectrogram, in time
    order."""
    floor = power.max() * 10.0 ** (-FLOOR_DB / 10.0)  # >= 0, so a peak above it is above 0
    around = _running_max(_running_max(power, PEAK_BINS, 1), PEAK_FRAMES, 0)
    # flat indices split by hand: np.nonzero of a 2-D mask took longer than the running maxima
    t, f = np.divmod(np.flatnonzero((power == around) & (power > floor)), power.shape[1])
    db = 10.0 * np.log10(power[t, f])
    top = (1 << LEVEL_BITS) - 1
    level = np.clip(np.round(db / LEVEL_STEP_DB) + (1 << (LEVEL_BITS - 1)), 0, top).astype(np.int64)
    return t.astype(np.int64), f.astype(np.int64), level


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
    power = _power(np.asarray(stretches, np.float32))
    found = [_peaks(one) for one in power]  # one stretch at a time: a section's spectrogram stays in the cache
    s = np.concatenate([np.full(t.size, k) for k, (t, _, _) in enumerate(found)])
    t, f, level = (np.concatenate(column) for column in zip(*found))
    h, a = _pairs(s, t, f)
    keys = (h.astype(np.int64) << LEVEL_BITS) | level[a]
    landmarks = np.stack([keys.astype(np.uint32), (t[a] + first_frames[s[a]]).astype(np.uint32)], axis=1)
    return landmarks[np.lexsort((landmarks[:, 1], landmarks[:, 0]))]


def fingerprint(y: np.ndarray) -> np.ndarray:
    """The landmarks of a whole clip (mono float32 at SAMPLE_RATE), frames from its first sample."""
    return _landmarks(np.asarray(y, np.float32)[None, :], np.zeros(1, np.int64))


def fingerprint_sections(sections: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The landmarks of a track's analysed sections ((n, samples) at SAMPLE_RATE), each placed on the
    track's clock by its start (seconds); a section's peaks pair only within it."""
    first = np.round(np.asarray(starts, np.float64) * SAMPLE_RATE / HOP).astype(np.int64)
    return _landmarks(np.atleast_2d(sections), first)


def _hashes(landmarks: np.ndarray) -> np.ndarray:
    return landmarks[:, 0] >> np.uint32(LEVEL_BITS)


def _levels_db(landmarks: np.ndarray) -> np.ndarray:
    return (landmarks[:, 0] & np.uint32((1 << LEVEL_BITS) - 1)).astype(np.float64) * LEVEL_STEP_DB


def _sorted(landmarks: np.ndarray) -> np.ndarray:
    """`landmarks` sorted by key. Fingerprints come sorted (a track's is matched by every /similar query of
    its guild, so it is sorted once, when it is made); others are sorted here."""
    landmarks = np.asarray(landmarks, np.uint32).reshape(-1, 2)
    keys = landmarks[:, 0]
    if keys.size > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
        landmarks = landmarks[np.argsort(keys, kind="stable")]
    return landmarks


def _pairs_at(query: np.ndarray, track: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query index, track index, offset in frames) of every pair of landmarks with one hash; `track`
    sorted."""
    hashes = _hashes(track)
    q_hashes = _hashes(query)
    lo = np.searchsorted(hashes, q_hashes, side="left")
    counts = np.searchsorted(hashes, q_hashes, side="right") - lo
    qi = np.repeat(np.arange(query.shape[0]), counts)
    ti = np.repeat(lo, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    return qi, ti, track[ti, 1].astype(np.int64) - query[qi, 1].astype(np.int64)


def _best_offset(offsets: np.ndarray) -> tuple[int, int]:
    """(offset, count) most offsets agree on, counting those within OFFSET_SLACK frames of it together."""
    values, tally = np.unique(offsets, return_counts=True)
    cum = np.concatenate([[0], np.cumsum(tally)])
    window = (cum[np.searchsorted(values, values + OFFSET_SLACK, side="right")]
              - cum[np.searchsorted(values, values - OFFSET_SLACK, side="left")])
    best = int(window.argmax())
    return int(values[best]), int(window[best])


def match(query: np.ndarray, track: np.ndarray, track_id: int = 0) -> FingerprintMatch:
    """The offset most of the query's landmarks agree on in the track, and how many agree (counting
    offsets within OFFSET_SLACK frames of it)."""
    q, t = np.asarray(query, np.uint32).reshape(-1, 2), _sorted(track)
    if q.size == 0 or t.size == 0:
        return FingerprintMatch(track_id, 0, 0.0)
    offsets = _pairs_at(q, t)[2]
    if offsets.size == 0:
        return FingerprintMatch(track_id, 0, 0.0)
    offset, count = _best_offset(offsets)
    return FingerprintMatch(track_id, count, offset * HOP / SAMPLE_RATE)


def evidence(query: np.ndarray, track: np.ndarray, found: FingerprintMatch, starts: np.ndarray) -> Evidence:
    """Which of the track's sections (starting at `starts`, seconds, as analysed) the query covers at
    `found`'s offset, on how many of them landmarks agree, and the agreeing landmarks' density and level
    spread there (Evidence)."""
    q, t = np.asarray(query, np.uint32).reshape(-1, 2), _sorted(track)
    if q.size == 0 or t.size == 0:
        return Evidence(0, 0, 0.0, np.inf)
    offset = int(round(found.offset * SAMPLE_RATE / HOP))
    qi, ti, offsets = _pairs_at(q, t)
    keep = np.abs(offsets - offset) <= OFFSET_SLACK
    qi, ti = qi[keep], ti[keep]
    frames = np.sort(t[:, 1].astype(np.int64))
    agreed = np.sort(t[np.unique(ti), 1].astype(np.int64))
    first, last = int(q[:, 1].min()) + offset, int(q[:, 1].max()) + offset
    section = np.round(np.asarray(starts, np.float64) * SAMPLE_RATE / HOP).astype(np.int64)
    lo, hi = np.maximum(section, first), np.minimum(section + SECTION_FRAMES, last + 1)
    landmarks = np.searchsorted(frames, hi) - np.searchsorted(frames, lo)
    agreeing = np.searchsorted(agreed, hi) - np.searchsorted(agreed, lo)
    covered = (hi - lo >= COVER_FRAMES) & (landmarks >= SECTION_LANDMARKS)
    density = float(agreeing[covered].sum() / max(1, landmarks[covered].sum()))
    gain = _levels_db(q)[qi] - _levels_db(t)[ti]
    spread = float(np.median(np.abs(gain - np.median(gain)))) if gain.size else np.inf
    return Evidence(int(covered.sum()), int((covered & (agreeing >= SECTION_AGREE)).sum()), density, spread)


def is_current(analysis_version: str | None) -> bool:
    """Whether a track analysed under `analysis_version` (core.analysis.analysis_version) stored a
    fingerprint of this recipe, which alone may be compared with a query's."""
    return analysis_version is not None and VERSION_TAG in analysis_version.split("|")


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

