"""core.dsp against librosa 0.11 on real audio (the demo clips; the team's 44.1/48-kHz library when present).

The runtime does its resampling, trimming and the front-end's log-mel without librosa (core.dsp), so these
hold each function to the librosa call it replaced, with the arguments the runtime uses. Measured: every
output below was bit-identical on the demo clips and the shared library; the tolerances (1e-6 relative) only
leave room for a last-bit change in a future NumPy or SciPy. End to end, the front-end's outputs on log-mel
patches made both ways stay within 1e-6, a hundredth of the 1e-4 its parity test allows (models/frontend.md).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from core import dsp
from core.constants import (FRONTEND_HOP_LENGTH, FRONTEND_LOG_SCALE, FRONTEND_N_FFT, FRONTEND_N_MELS,
                            FRONTEND_SAMPLE_RATE, SAMPLE_RATE, SEGMENT_SAMPLES, SILENCE_TOP_DB)
from tests.conftest import REPO_ROOT

DEMO = sorted((REPO_ROOT / "demo" / "clips").glob("*.ogg"))
RTOL = 1e-6


def mono(path: Path, seconds: float = 40.0) -> tuple[np.ndarray, int]:
    y, sr = sf.read(path, dtype="float32", always_2d=True, frames=int(seconds * sf.info(path).samplerate))
    return y.mean(axis=1).astype(np.float32), sr


def segments(y: np.ndarray) -> np.ndarray:
    n = y.size // SEGMENT_SAMPLES
    return y[:n * SEGMENT_SAMPLES].reshape(n, SEGMENT_SAMPLES)


def close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=RTOL * float(np.abs(theirs).max()))


@pytest.fixture(scope="module", params=DEMO, ids=lambda p: p.stem)
def clip(request: pytest.FixtureRequest) -> np.ndarray:
    y, sr = mono(request.param)
    assert sr == SAMPLE_RATE
    return y


def test_resampling_is_librosas_soxr_hq(clip: np.ndarray) -> None:
    pieces = segments(clip)
    close(dsp.resample(pieces, orig_sr=SAMPLE_RATE, target_sr=FRONTEND_SAMPLE_RATE, axis=-1),
          librosa.resample(pieces, orig_sr=SAMPLE_RATE, target_sr=FRONTEND_SAMPLE_RATE, res_type="soxr_hq",
                           axis=-1))
    at_48k = librosa.resample(clip, orig_sr=SAMPLE_RATE, target_sr=48_000, res_type="soxr_hq")
    for y in (at_48k, at_48k[:-7]):  # a length whose resampled size is rounded up: fix_length pads
        close(dsp.resample(y, orig_sr=48_000, target_sr=SAMPLE_RATE),
              librosa.resample(y, orig_sr=48_000, target_sr=SAMPLE_RATE, res_type="soxr_hq"))
    assert dsp.resample(clip, orig_sr=SAMPLE_RATE, target_sr=SAMPLE_RATE) is clip


def same_bits(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    assert ours.tobytes() == theirs.tobytes(), f"largest difference {np.max(np.abs(ours - theirs))}"


def test_a_batch_resamples_to_each_lines_own_bits(clip: np.ndarray) -> None:
    """dsp.resample gives soxr every line at once, as the channels of one signal; librosa resamples one line
    at a time. soxr filters each channel alone, so each line must come out to the bit as on its own, along
    any axis and from any memory layout."""
    pieces = segments(clip)
    alone = np.stack([librosa.resample(p, orig_sr=SAMPLE_RATE, target_sr=FRONTEND_SAMPLE_RATE,
                                       res_type="soxr_hq") for p in pieces])
    same_bits(dsp.resample(pieces, orig_sr=SAMPLE_RATE, target_sr=FRONTEND_SAMPLE_RATE), alone)
    same_bits(dsp.resample(pieces.T, orig_sr=SAMPLE_RATE, target_sr=FRONTEND_SAMPLE_RATE, axis=0), alone.T)
    same_bits(dsp.resample(np.asfortranarray(pieces), orig_sr=SAMPLE_RATE, target_sr=FRONTEND_SAMPLE_RATE),
              alone)
    every_other = pieces[::-1, ::2]
    same_bits(dsp.resample(every_other, orig_sr=SAMPLE_RATE, target_sr=FRONTEND_SAMPLE_RATE),
              librosa.resample(every_other, orig_sr=SAMPLE_RATE, target_sr=FRONTEND_SAMPLE_RATE,
                               res_type="soxr_hq", axis=-1))


def test_the_stft_power_is_librosas_complex64_squared(clip: np.ndarray) -> None:
    """dsp.stft_power frames its lines its own way (rows, one line at a time); the bits must be those of
    |librosa.stft|**2 computed from librosa's complex64 STFT, for a batch and for one line."""
    at_16k = dsp.resample(segments(clip), orig_sr=SAMPLE_RATE, target_sr=FRONTEND_SAMPLE_RATE)
    for y, n_fft, hop in ((at_16k, FRONTEND_N_FFT, FRONTEND_HOP_LENGTH),
                          (clip[:SAMPLE_RATE * 5 + 333], 2048, 512),  # one line, of no whole number of hops
                          (at_16k[:2, :4000].reshape(2, 2, 2000), 512, 128)):
        stft = librosa.stft(y, n_fft=n_fft, hop_length=hop)
        same_bits(dsp.stft_power(y, n_fft=n_fft, hop_length=hop),
                  np.swapaxes(stft.real**2 + stft.imag**2, -1, -2))


def test_mel_filters_are_librosas() -> None:
    for sr, n_fft, n_mels in ((FRONTEND_SAMPLE_RATE, FRONTEND_N_FFT, FRONTEND_N_MELS),
                              (SAMPLE_RATE, 2048, 128)):
        close(dsp.mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels), librosa.filters.mel(sr=sr, n_fft=n_fft,
                                                                                       n_mels=n_mels))


def test_rms_decibels_and_trim_are_librosas(clip: np.ndarray) -> None:
    fade = np.linspace(0.0, 1.0, 20_000, dtype=np.float32) ** 4
    padded = np.concatenate([np.zeros(30_001, np.float32), clip[:20_000] * fade, clip[20_000:],
                             np.full(40_000, 1e-5, np.float32)])
    for center in (True, False):
        close(dsp.rms(y=padded, frame_length=2048, hop_length=512, center=center),
              librosa.feature.rms(y=padded, frame_length=2048, hop_length=512, center=center))
    # rms writes the centring zeros into its buffer of squares: the bits of frames over zeros padded on
    same_bits(dsp.rms(y=padded), dsp.rms(y=np.pad(padded, 1024), center=False))
    pieces = segments(clip)  # batched, and other whole-hop frames
    close(dsp.rms(y=pieces, frame_length=1024, hop_length=256),
          librosa.feature.rms(y=pieces, frame_length=1024, hop_length=256))
    with pytest.raises(ValueError, match="whole hops"):
        dsp.rms(y=padded, frame_length=2048, hop_length=500)
    frames = librosa.feature.rms(y=padded)[0]
    close(dsp.amplitude_to_db(frames, ref=0.25, top_db=None), librosa.amplitude_to_db(frames, ref=0.25,
                                                                                     top_db=None))
    close(dsp.amplitude_to_db(frames, ref=np.max), librosa.amplitude_to_db(frames, ref=np.max))
    kept, bounds = dsp.trim(padded, top_db=SILENCE_TOP_DB, frame_length=2048, hop_length=512)
    their_kept, their_bounds = librosa.effects.trim(padded, top_db=SILENCE_TOP_DB, frame_length=2048,
                                                    hop_length=512)
    assert bounds.tolist() == their_bounds.tolist() and 29_000 < bounds[0] < 40_000
    assert np.array_equal(kept, their_kept)
    quiet = np.full(10_000, 1e-7, np.float32)
    quiet[::97] = 0.0
    assert dsp.trim(quiet, top_db=SILENCE_TOP_DB)[1].tolist() == librosa.effects.trim(
        quiet, top_db=SILENCE_TOP_DB)[1].tolist()


def test_the_front_end_answers_the_same_on_either_log_mel(clip: np.ndarray) -> None:
    """The shipped network on log-mel patches made by core.dsp and by the librosa calls it replaced (the
    front-end's code before, line for line)."""
    from core.frontend import load_frontend, log_mel, patches_from_segments

    at_16k = librosa.resample(segments(clip), orig_sr=SAMPLE_RATE, target_sr=FRONTEND_SAMPLE_RATE,
                              res_type="soxr_hq", axis=-1)
    stft = librosa.stft(at_16k, n_fft=FRONTEND_N_FFT, hop_length=FRONTEND_HOP_LENGTH)
    power = (stft.real**2 + stft.imag**2).astype(np.float32)
    mel = np.einsum("mf,...ft->...tm", librosa.filters.mel(sr=FRONTEND_SAMPLE_RATE, n_fft=FRONTEND_N_FFT,
                                                           n_mels=FRONTEND_N_MELS), power, optimize=True)
    theirs = np.log10(1.0 + FRONTEND_LOG_SCALE * mel, dtype=np.float32)
    close(log_mel(at_16k), theirs)
    ours = patches_from_segments(segments(clip))
    frontend = load_frontend(REPO_ROOT / "models")
    a, b = frontend(ours), frontend(theirs[:, :ours.shape[1]])
    for layer in ("penultimate", "tags"):
        np.testing.assert_allclose(a[layer], b[layer], atol=1e-6)


def test_no_samples_resample_to_no_samples() -> None:
    """A file that decodes to nothing reaches the resampler before the decoder's friendly EmptyAudio: it
    must come out empty, as librosa's does, not fail inside the batch reshaping."""
    for y, axis in ((np.zeros(0, np.float32), -1), (np.zeros((3, 0), np.float32), -1),
                    (np.zeros((0, 2), np.float32), 0)):
        ours = dsp.resample(y, orig_sr=44_100, target_sr=SAMPLE_RATE, axis=axis)
        theirs = librosa.resample(y, orig_sr=44_100, target_sr=SAMPLE_RATE, res_type="soxr_hq", axis=axis)
        assert ours.shape == theirs.shape and ours.dtype == np.float32


def test_the_team_librarys_rates_resample_and_trim_as_librosa(shared_data: Path) -> None:
    """Tracks at 44.1 and 48 kHz (the demo clips are all at 22 050 Hz, which needs no resampling)."""
    tracks = sorted((shared_data / "library").glob("*.ogg"))[:4]
    rates = set()
    for path in tracks:
        y, sr = mono(path, seconds=20.0)
        rates.add(sr)
        ours = dsp.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE)
        close(ours, librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq"))
        assert dsp.trim(ours, top_db=SILENCE_TOP_DB)[1].tolist() == librosa.effects.trim(
            ours, top_db=SILENCE_TOP_DB)[1].tolist()
    assert rates - {SAMPLE_RATE}


def test_analysing_a_clip_imports_neither_librosa_nor_scipy_nor_scikit_learn(tmp_path: Path) -> None:
    """The default path (decode, trim, segments, front-end, genre, mood, tags, embedding) in a fresh
    interpreter: the modules the runtime install leaves out are never imported, here where they exist."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from core.analysis import Limits, analyse\n"
        f"result = analyse({str(DEMO[0])!r}, Limits(Path({str(REPO_ROOT / 'models')!r}), 60.0, 10))\n"
        "left_out = {'librosa', 'scipy', 'sklearn', 'numba'}\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in left_out)\n"
        "print(json.dumps({'genre': result.genre, 'mood': result.mood, 'heavy': heavy}))\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(run.stdout.strip().splitlines()[-1])
    assert doc["genre"] and doc["mood"]
    assert doc["heavy"] == []
