"""Whole-file decode against section decode, per track, on the real library and a few re-encodings.

For each segment count (10 / 20 / 40 per track) and each track of ../shared/data/library (68 Ogg Vorbis
soundtracks): the whole-file path `segment(trim_silence(decode(...)))` against `load_segments(...)`, which
decodes only the ends and the segments' spans when they are a small part of the file. Printed per format
and segment count: CPU seconds per track (this process and the ffmpeg it starts) and wall seconds per
track, the whole/sections ratio, the share of the audio actually decoded, and how the two paths agree:
tracks with the same trim (sound start and length) and the same segment positions; full segments equal to
1e-5 to the whole decode at the same samples of the file; for the others the shift (cross-correlation lag,
in samples at 22 050 Hz), the waveform correlation at that shift, and the log-mel correlation with the
whole decode's samples at the same place (what the features see).

The same for --encodings of the library's longest tracks re-encoded to mp3 (libsndfile reads it), Opus and
AAC/m4a (ffmpeg reads those) in a temporary folder, and for those two, the three ways of asking ffmpeg for
the spans: one run per span, one run with one seeking input per span (what core.audio does), one run whose
`aselect` filter keeps the spans (decodes everything). One process, one thread; no target, figures only.

    .venv/bin/python benchmarks/bench_decode.py [--library DIR] [--segments 10 20 40] [--encodings 4] [--json]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from core import audio  # noqa: E402
from core.audio import (  # noqa: E402
    Segments,
    decode,
    ffmpeg_exe,
    load_segments,
    piece_spans,
    segment,
    trim_silence,
)
from core.constants import (  # noqa: E402
    SAMPLE_RATE,
    SEGMENT_SAMPLES,
    SILENCE_TOP_DB,
    TRIM_FRAME_LENGTH,
    TRIM_HOP_LENGTH,
)

MAX_SECONDS = 1200.0
MAX_LAG = 2048
"""Shifts searched when a section's segment differs from the whole file's (samples at SAMPLE_RATE)."""

ENCODINGS = {".mp3": ["-c:a", "libmp3lame", "-b:a", "128k"], ".opus": ["-c:a", "libopus", "-b:a", "96k"],
             ".m4a": ["-c:a", "aac", "-b:a", "128k"]}


def cpu_wall(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(CPU seconds of this process and its children, wall seconds, result) of one call."""
    t0, w0 = os.times(), time.perf_counter()
    result = fn()
    t1, w1 = os.times(), time.perf_counter()
    cpu = sum(t1[i] - t0[i] for i in range(4))  # user, system, children's user, children's system
    return cpu, w1 - w0, result


@dataclass
class Tally:
    """Figures of one (format, segment count) over its tracks."""

    tracks: int = 0
    sectioned: int = 0
    whole_cpu: float = 0.0
    whole_wall: float = 0.0
    sections_cpu: float = 0.0
    sections_wall: float = 0.0
    decoded_seconds: float = 0.0
    file_seconds: float = 0.0
    same_trim: int = 0
    same_positions: int = 0
    tails: int = 0
    segments: int = 0
    equal_segments: int = 0
    lags: list[int] = field(default_factory=list)
    shifted_correlations: list[float] = field(default_factory=list)
    log_mel_correlations: list[float] = field(default_factory=list)
    clip_seconds_diff: list[float] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        n = max(self.tracks, 1)
        lags = np.abs(np.asarray(self.lags)) if self.lags else np.zeros(1)
        return {
            "tracks": self.tracks,
            "sectioned": self.sectioned,
            "whole_cpu_s": round(self.whole_cpu / n, 4), "whole_wall_s": round(self.whole_wall / n, 4),
            "sections_cpu_s": round(self.sections_cpu / n, 4),
            "sections_wall_s": round(self.sections_wall / n, 4),
            "ratio_cpu": round(self.whole_cpu / max(self.sections_cpu, 1e-9), 2),
            "ratio_wall": round(self.whole_wall / max(self.sections_wall, 1e-9), 2),
            "decoded_share": round(self.decoded_seconds / max(self.file_seconds, 1e-9), 3),
            "same_trim": self.same_trim,
            "same_positions": self.same_positions,
            "tail_pieces": self.tails,
            "segments": self.segments,
            "equal_segments": self.equal_segments,
            "shifted_segments": len(self.lags),
            "max_abs_lag": int(lags.max()),
            "median_abs_lag": float(np.median(lags)),
            "min_shifted_correlation": round(min(self.shifted_correlations, default=1.0), 4),
            "min_shifted_log_mel_correlation": round(min(self.log_mel_correlations, default=1.0), 4),
            "median_shifted_log_mel_correlation": round(float(np.median(self.log_mel_correlations))
                                                        if self.log_mel_correlations else 1.0, 4),
            "max_clip_seconds_diff": round(max(self.clip_seconds_diff, default=0.0), 3),
        }


class DecodedLog(logging.Handler):
    """What `load_segments` logs about the sections it decoded (seconds decoded, where the sound starts),
    while it is installed; None when it decoded the whole file."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.decoded: float | None = None
        self.sound_start: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("%s: decoded %.1f s of"):
            args = record.args
            assert isinstance(args, tuple)
            self.decoded = float(args[1])
            self.sound_start = round(float(args[4]) * SAMPLE_RATE)

    def __enter__(self) -> DecodedLog:
        logger = logging.getLogger(audio.__name__)
        logger.addHandler(self)
        logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *_: object) -> None:
        logger = logging.getLogger(audio.__name__)
        logger.removeHandler(self)
        logger.setLevel(logging.NOTSET)


def log_mel(y: np.ndarray) -> np.ndarray:
    import librosa

    return librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, n_fft=2048, hop_length=512,
                                                              n_mels=64))


def agreement(tally: Tally, sections: Segments, sound_start: int, whole: Segments, whole_start: int,
              y: np.ndarray) -> None:
    """Compare the sections path's segments (its sound starting at `sound_start`) with the whole decode
    `y` at the same samples of the file (see the module docstring)."""
    from scipy.signal import correlate

    tally.clip_seconds_diff.append(abs(sections.clip_seconds - whole.clip_seconds))
    tally.same_trim += sound_start == whole_start and sections.clip_seconds == whole.clip_seconds
    tally.same_positions += (len(sections) == len(whole) and np.array_equal(sections.starts, whole.starts)
                             and sound_start == whole_start)
    clip_samples = round(sections.clip_seconds * SAMPLE_RATE)
    for piece, start in zip(sections.audio, sections.starts):
        offset = round(start * SAMPLE_RATE)
        if offset + SEGMENT_SAMPLES > clip_samples:
            tally.tails += 1  # the final piece, filled up by repeating itself: compared by its trim
            continue
        tally.segments += 1
        at = sound_start + offset
        reference = y[at:at + SEGMENT_SAMPLES]
        if float(np.max(np.abs(piece - reference))) <= 1e-5:
            tally.equal_segments += 1
            continue
        lo = max(0, at - MAX_LAG)
        context = y[lo:at + SEGMENT_SAMPLES + MAX_LAG]
        best = int(np.argmax(correlate(context, piece, mode="valid", method="fft")))
        tally.lags.append(lo + best - at)
        match = context[best:best + SEGMENT_SAMPLES]
        tally.shifted_correlations.append(float(np.corrcoef(match, piece)[0, 1]))
        tally.log_mel_correlations.append(float(np.corrcoef(log_mel(reference).ravel(),
                                                            log_mel(piece).ravel())[0, 1]))


def whole_path(path: Path, max_segments: int) -> tuple[np.ndarray, Segments]:
    """(decoded file, segments) the way `load_segments` did before sections."""
    y = decode(path, max_seconds=MAX_SECONDS)
    return y, segment(trim_silence(y, name=path.name), max_segments=max_segments)


def trim_start(y: np.ndarray) -> int:
    """Where `trim_silence` makes `y` start."""
    import librosa

    _, (start, _) = librosa.effects.trim(y, top_db=SILENCE_TOP_DB, frame_length=TRIM_FRAME_LENGTH,
                                         hop_length=TRIM_HOP_LENGTH)
    return int(start)


def measure(paths: list[Path], segment_counts: list[int]) -> dict[int, Tally]:
    tallies = {m: Tally() for m in segment_counts}
    for path in paths:
        for m in segment_counts:
            tally = tallies[m]
            cpu, wall, (y, whole) = cpu_wall(lambda: whole_path(path, m))
            tally.whole_cpu += cpu
            tally.whole_wall += wall
            with DecodedLog() as log:
                cpu, wall, sections = cpu_wall(
                    lambda: load_segments(path, max_seconds=MAX_SECONDS, max_segments=m))
            tally.sections_cpu += cpu
            tally.sections_wall += wall
            tally.tracks += 1
            tally.sectioned += log.decoded is not None
            tally.file_seconds += y.size / SAMPLE_RATE
            tally.decoded_seconds += y.size / SAMPLE_RATE if log.decoded is None else log.decoded
            whole_start = trim_start(y)
            agreement(tally, sections, whole_start if log.sound_start is None else log.sound_start, whole,
                      whole_start, y)
    return tallies


def encode(source: Path, target: Path) -> Path:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(source),
                    *ENCODINGS[target.suffix], str(target)], check=True)
    return target


def ffmpeg_strategies(path: Path, max_segments: int) -> dict[str, dict[str, float]]:
    """CPU and wall seconds of three ways to get the segments' spans (plus margins) out of ffmpeg."""
    y = decode(path, max_seconds=MAX_SECONDS)
    margin = audio.SECTION_MARGIN_SAMPLES
    spans = [(max(0, a - margin), min(y.size, b + margin))
             for a, b in piece_spans(y.size, max_segments=max_segments)]
    base = [ffmpeg_exe(), "-nostdin", "-v", "error"]
    out = ["-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le"]

    def seek(a: int, b: int) -> list[str]:
        return ["-protocol_whitelist", "file,pipe", "-ss", f"{a / SAMPLE_RATE:.6f}",
                "-t", f"{(b - a) / SAMPLE_RATE:.6f}", "-i", str(path)]

    def one_run_per_span() -> None:
        for a, b in spans:
            subprocess.run([*base, *seek(a, b), "-map", "0:a:0", *out, "pipe:1"], capture_output=True,
                           check=True)

    def one_run_seeking_inputs() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [*base]
            for a, b in spans:
                cmd += seek(a, b)
            for i in range(len(spans)):
                cmd += ["-map", f"{i}:a:0", *out, f"{tmp}/{i}.f32"]
            subprocess.run(cmd, capture_output=True, check=True)

    def one_run_aselect() -> None:
        keep = "+".join(f"between(t,{a / SAMPLE_RATE:.6f},{b / SAMPLE_RATE:.6f})" for a, b in spans)
        subprocess.run([*base, "-protocol_whitelist", "file,pipe", "-i", str(path), "-map", "0:a:0",
                        "-af", f"aselect='{keep}'", *out, "pipe:1"], capture_output=True, check=True)

    def whole_file() -> None:
        subprocess.run([*base, "-protocol_whitelist", "file,pipe", "-i", str(path), "-map", "0:a:0", *out,
                        "pipe:1"], capture_output=True, check=True)

    figures = {}
    for name, fn in (("whole file", whole_file), ("one run per span", one_run_per_span),
                     ("one run, one seeking input per span", one_run_seeking_inputs),
                     ("one run, aselect filter", one_run_aselect)):
        cpu, wall, _ = cpu_wall(fn)
        figures[name] = {"cpu_s": round(cpu, 4), "wall_s": round(wall, 4)}
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", type=Path, default=ROOT.parent / "shared" / "data" / "library")
    parser.add_argument("--segments", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--encodings", type=int, default=4, help="longest library tracks to re-encode")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tracks = sorted(args.library.glob("*.ogg"))
    if not tracks:
        print(f"no .ogg tracks in {args.library}", file=sys.stderr)
        return 2
    whole_path(tracks[0], args.segments[0])  # warm-up: first calls of the resampler and librosa are slow
    load_segments(tracks[0], max_seconds=MAX_SECONDS, max_segments=args.segments[0])
    results: dict[str, Any] = {"load_average": [round(v, 2) for v in os.getloadavg()], "formats": {}}
    results["formats"]["ogg (library)"] = {m: t.row() for m, t in measure(tracks, args.segments).items()}
    longest = sorted(tracks, key=lambda p: decode(p, max_seconds=MAX_SECONDS).size)[-args.encodings:]
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp:
        for suffix in ENCODINGS:
            encoded = [encode(p, Path(tmp) / f"{i}{suffix}") for i, p in enumerate(longest)]
            tallies = measure(encoded, args.segments)
            results["formats"][suffix.lstrip(".")] = {m: t.row() for m, t in tallies.items()}
            if suffix != ".mp3":
                results.setdefault("ffmpeg_strategies", {})[suffix.lstrip(".")] = {
                    m: ffmpeg_strategies(encoded[-1], m) for m in args.segments}
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"load average {results['load_average']} (2 cores, shared); per track: CPU / wall seconds")
    for name, rows in results["formats"].items():
        print(f"\n{name}")
        for m, r in rows.items():
            print(f"  {m:>2} segments, {r['tracks']} tracks ({r['sectioned']} by sections): "
                  f"whole {r['whole_cpu_s']:.3f} / {r['whole_wall_s']:.3f}  "
                  f"sections {r['sections_cpu_s']:.3f} / {r['sections_wall_s']:.3f}  "
                  f"ratio {r['ratio_cpu']:.2f}x / {r['ratio_wall']:.2f}x  "
                  f"decoded {100 * r['decoded_share']:.0f} %")
            print(f"      agreement: same trim {r['same_trim']}/{r['tracks']} tracks (else the clip's length "
                  f"differs by <= {r['max_clip_seconds_diff']} s), same positions {r['same_positions']}; "
                  f"full segments equal to 1e-5 at the same samples {r['equal_segments']}/{r['segments']} "
                  f"(+{r['tail_pieces']} repeated tails); shifted {r['shifted_segments']} (|lag| median "
                  f"{r['median_abs_lag']:g}, max {r['max_abs_lag']} samples; waveform correlation there >= "
                  f"{r['min_shifted_correlation']}; log-mel correlation with the whole file's segment at the "
                  f"same place: median {r['median_shifted_log_mel_correlation']}, min "
                  f"{r['min_shifted_log_mel_correlation']})")
    for name, by_segments in results.get("ffmpeg_strategies", {}).items():
        print(f"\nffmpeg strategies, {name} (longest re-encoded track): CPU / wall seconds")
        for m, figures in by_segments.items():
            shown = "  ".join(f"{k} {v['cpu_s']:.3f} / {v['wall_s']:.3f}" for k, v in figures.items())
            print(f"  {m:>2} segments: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
