"""End-to-end `cratedigger genre` latency and throughput, on a 30-s clip and a 4-minute track.

- cold: a fresh `cratedigger genre --json FILE` process (interpreter start, imports, model load, decode,
  features, inference), median of --cold runs;
- warm: `core.cli.main(["genre", "--json", FILE])` repeated in one process (the model is loaded once),
  median of --warm runs, as wall time and this process's CPU time;
- throughput: two worker processes (the machine's two cores) classifying the 30-s clip over and over,
  clips per second of wall time.

Target (issue 3): warm 30-s clip <= 1 s total (wall). Exit 1 on a miss. The machine is shared: the load
average is printed with the figures.

    .venv/bin/python benchmarks/bench_genre.py [--cold 3] [--warm 7] [--clips 12] [--json]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from multiprocessing import get_context  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.bench_features import LIBRARY, TRACK, thirty_second_clip  # noqa: E402
from core.cli import main as cli_main  # noqa: E402

CLI = Path(sys.executable).with_name("cratedigger")
TARGET_WARM_30S = 1.0


def cold(path: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(CLI), "genre", "--json", str(path)], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def classify(path: Path) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(["genre", "--json", str(path)])
    if code != 0:
        raise RuntimeError(f"cratedigger genre exited {code} on {path}")
    return json.loads(out.getvalue())[0]


def warm(path: Path, runs: int) -> tuple[float, float, dict]:
    doc = classify(path)
    wall, cpu = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        doc = classify(path)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), doc


def _worker_warm(path: str) -> None:
    classify(Path(path))


def throughput(path: Path, clips: int, workers: int = 2) -> float:
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_warm,
                             initargs=(str(path),)) as pool:
        list(pool.map(classify, [path] * workers))  # every worker has loaded the model
        started = time.perf_counter()
        list(pool.map(classify, [path] * clips))
        return clips / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=3)
    parser.add_argument("--warm", type=int, default=7)
    parser.add_argument("--clips", type=int, default=12, help="clips for the throughput run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = thirty_second_clip(Path(tmp))
        report: dict = {"load_average_before": [round(v, 2) for v in os.getloadavg()]}
        for name, path in (("30-s clip", clip), ("4-min track", LIBRARY / TRACK)):
            wall, cpu, doc = warm(path, args.warm)
            report[name] = {"cold_s": round(cold(path, args.cold), 3), "warm_wall_s": round(wall, 3),
                            "warm_cpu_s": round(cpu, 3), "segments": doc["segments"], "model": doc["model"],
                            "verdict": doc["genre"]}
        report["throughput_clips_per_s_2_workers"] = round(throughput(clip, args.clips), 2)
        report["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"load average {report['load_average_before']} -> {report['load_average_after']} "
              "(2 cores, shared)")
        for name in ("30-s clip", "4-min track"):
            r = report[name]
            print(f"{name}: cold {r['cold_s']:.2f} s, warm {r['warm_wall_s']:.3f} s wall / "
                  f"{r['warm_cpu_s']:.3f} s cpu ({r['segments']} segments, {r['model']}: {r['verdict']})")
        print(f"throughput: {report['throughput_clips_per_s_2_workers']:.2f} 30-s clips/s on 2 workers")
    if report["30-s clip"]["warm_wall_s"] > TARGET_WARM_30S:
        print(f"MISSED: warm 30-s clip {report['30-s clip']['warm_wall_s']:.3f} s > {TARGET_WARM_30S:g} s",
              file=sys.stderr)
        return 1
    print(f"target met: warm 30-s clip <= {TARGET_WARM_30S:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
