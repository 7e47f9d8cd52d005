"""Decode + segment + features on one core: a 30-s clip and a 4-minute track from ../shared/data/library/.

For each clip: seconds per stage (median of --repeats runs after a warm-up) as wall time and as this
process's CPU time (the machine is shared; CPU time is what "one core" means when others steal it), and
the real-time factor (clip seconds / processing seconds). Feature sets:
- front-end: what genre, mood and similarity read (core.frontend: 16-kHz log-mel patches and the network,
  LiteRT, one thread), and of which the log-mel patches alone;
- descriptors: the 57 seed descriptors with the clip as level reference (the descriptor genre model's
  input), and of which HPSS and tempo, the two slow families, timed alone on the same STFT.
"as served" analyses at most `max_segments` (40) segments spread over the track, as the product does;
"every segment" analyses the whole track.

Target: decode + segment + front-end >= 10x real time on one core as served, for both clips (a 30-s
upload then costs at most 3 s of one core). Exit 1 on a miss.

    .venv/bin/python benchmarks/bench_features.py [--repeats 5] [--json]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core import features as F  # noqa: E402
from core.audio import decode, segment, trim_silence  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.constants import SAMPLE_RATE  # noqa: E402
from core.frontend import load_frontend, patches_from_segments  # noqa: E402

LIBRARY = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "library"
CLIP_SOURCE = "lincity-ng__02 - Robert van Herk - City Blues.ogg"
TRACK = "supertux2__ghostforest_map.ogg"  # 237 s, the library's closest to 4 minutes
TARGET_FRONTEND_RTF = 10.0


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Median wall and CPU seconds of `fn` over `repeats` runs (after one untimed warm-up)."""
    result = fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), result


def thirty_second_clip(folder: Path) -> Path:
    """30 s from the middle of CLIP_SOURCE, written as Ogg Vorbis like the rest of the library."""
    import soundfile as sf

    y = decode(LIBRARY / CLIP_SOURCE, max_seconds=3600)
    start = (y.size - 30 * SAMPLE_RATE) // 2
    path = folder / "clip30.ogg"
    sf.write(path, y[start:start + 30 * SAMPLE_RATE], SAMPLE_RATE, format="OGG", subtype="VORBIS")
    return path


def measure(path: Path, max_segments: int, repeats: int) -> dict[str, Any]:
    settings = load_settings(env_file=None)
    y_wall, y_cpu, y = timed(lambda: decode(path, max_seconds=settings.max_clip_seconds), repeats)
    seconds = y.size / SAMPLE_RATE
    s_wall, s_cpu, segs = timed(lambda: segment(trim_silence(y), max_segments=max_segments), repeats)
    audio = segs.audio
    network = load_frontend(settings.models_dir)
    p_wall, p_cpu, _ = timed(lambda: patches_from_segments(audio), repeats)
    m_wall, m_cpu, _ = timed(lambda: network.embed_segments(audio), repeats)
    x_wall, x_cpu, _ = timed(lambda: F.extract(segs).descriptors, repeats)
    spectra = F._spectra(audio)
    h_wall, h_cpu, _ = timed(lambda: F._hpss_stats(audio, spectra), repeats)
    t_wall, t_cpu, _ = timed(lambda: F._tempo(spectra.log_mel("clip")), repeats)
    base_wall, base_cpu = y_wall + s_wall, y_cpu + s_cpu
    return {
        "clip_seconds": round(seconds, 1),
        "segments": len(segs),
        "decode_s": {"wall": round(y_wall, 4), "cpu": round(y_cpu, 4)},
        "trim_segment_s": {"wall": round(s_wall, 4), "cpu": round(s_cpu, 4)},
        "frontend_s": {"wall": round(m_wall, 4), "cpu": round(m_cpu, 4)},
        "of_which_log_mel_s": {"wall": round(p_wall, 4), "cpu": round(p_cpu, 4)},
        "descriptors_s": {"wall": round(x_wall, 4), "cpu": round(x_cpu, 4)},
        "of_which_hpss_s": {"wall": round(h_wall, 4), "cpu": round(h_cpu, 4)},
        "of_which_tempo_s": {"wall": round(t_wall, 4), "cpu": round(t_cpu, 4)},
        "rtf_decode_frontend": {"wall": round(seconds / (base_wall + m_wall), 1),
                                "cpu": round(seconds / (base_cpu + m_cpu), 1)},
        "rtf_decode_descriptors": {"wall": round(seconds / (base_wall + x_wall), 1),
                                   "cpu": round(seconds / (base_cpu + x_cpu), 1)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    served = load_settings(env_file=None).max_segments
    with tempfile.TemporaryDirectory() as tmp:
        clip = thirty_second_clip(Path(tmp))
        runs = {
            "30-s clip": measure(clip, served, args.repeats),
            "4-min track, as served": measure(LIBRARY / TRACK, served, args.repeats),
            "4-min track, every segment": measure(LIBRARY / TRACK, 10_000, args.repeats),
        }
    report = {"load_average": [round(v, 2) for v in os.getloadavg()], "runs": runs,
              "target_rtf_decode_frontend": TARGET_FRONTEND_RTF}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"load average {report['load_average']} (2 cores, shared); median of {args.repeats}; "
              "wall / cpu")
        for name, r in runs.items():
            print(f"\n{name}: {r['clip_seconds']} s, {r['segments']} segments")
            for key in ("decode_s", "trim_segment_s", "frontend_s", "of_which_log_mel_s", "descriptors_s",
                        "of_which_hpss_s", "of_which_tempo_s"):
                print(f"  {key:<22} {r[key]['wall']:8.3f} / {r[key]['cpu']:.3f} s")
            for key in ("rtf_decode_frontend", "rtf_decode_descriptors"):
                print(f"  {key:<22} {r[key]['wall']:7.1f}x / {r[key]['cpu']:.1f}x real time")
    missed = [name for name, r in runs.items()
              if "every" not in name and r["rtf_decode_frontend"]["cpu"] < TARGET_FRONTEND_RTF]
    if missed:
        print(f"\nMISSED: decode + front-end below {TARGET_FRONTEND_RTF:g}x real time (CPU) for {missed}",
              file=sys.stderr)
        return 1
    print(f"\ntarget met: decode + front-end >= {TARGET_FRONTEND_RTF:g}x real time (CPU, one core) as served")
    return 0


if __name__ == "__main__":
    sys.exit(main())
