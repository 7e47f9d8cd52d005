"""`cratedigger genre` latency, throughput and memory, for this tree and for a baseline tree in one run.

The baseline is the project as it was at git revision --baseline (default: the last commit before the
front-end, whose default genre model was bilstm-distilled-v1 over MFCCs), unpacked with `git archive` into a
temporary folder and run with the same interpreter. For each tree and each input (a 30-s clip cut from the
shared library, and a 4-minute track):
- cold: a fresh `python -m core genre --json FILE` (interpreter start, imports, model load, decode,
  features, inference), median of --cold runs;
- warm: the CLI's `main(["genre", ...])` repeated in one process, median wall and CPU time;
- worker memory: peak RSS (VmHWM) of a process that has loaded every model and analysed the clip for
  genre, mood and embedding at once, as a service worker does;
- throughput: two such processes side by side classifying the 30-s clip, clips per second.

Targets (issue 10): warm 30-s clip <= 0.5 s wall; a loaded worker <= 700 MB; cold start no slower than the
baseline's (within 10 %). Exit 1 on a miss. The load average is printed: the machine may be shared.

    .venv/bin/python benchmarks/bench_genre.py [--baseline REV] [--cold 3] [--warm 7] [--clips 12] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.bench_features import LIBRARY, TRACK, thirty_second_clip  # noqa: E402

BASELINE = "19bce18"
TARGET_WARM_30S = 0.5
TARGET_WORKER_MB = 700.0
COLD_SLACK = 1.10

DRIVER = r"""
import contextlib, io, json, statistics, sys, time
from pathlib import Path
from core.cli import main
from core.analysis import Limits, analyse
from core.config import load_settings

def genre(path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["genre", "--json", path])
    if code != 0:
        raise SystemExit(f"cratedigger genre exited {code}")
    return json.loads(out.getvalue())[0]

mode, path, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "warm":
    doc = genre(path)
    wall, cpu = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        doc = genre(path)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    print(json.dumps({"wall": statistics.median(wall), "cpu": statistics.median(cpu),
                      "segments": doc["segments"], "model": doc["model"], "genre": doc["genre"]}))
elif mode == "worker":
    s = load_settings(env_file=None)
    analyse(Path(path), Limits(s.models_dir, s.max_clip_seconds, s.max_segments))
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    print(json.dumps({"peak_mb": int(status["VmHWM"].split()[0]) / 1024}))
elif mode == "loop":
    genre(path)
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(runs):
        genre(path)
"""


def baseline_tree(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "core", "models", "migrations"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _env(tree: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3",
           "CRATEDIGGER_MODELS_DIR": str(tree / "models")}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = "1"
    return env


def driver(tree: Path, mode: str, path: Path, runs: int) -> dict:
    out = subprocess.run([sys.executable, "-c", DRIVER, mode, str(path), str(runs)], cwd=tree, env=_env(tree),
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cold(tree: Path, path: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "core", "genre", "--json", str(path)], cwd=tree, env=_env(tree),
                       check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def throughput(tree: Path, path: Path, clips: int, workers: int = 2) -> float:
    procs = [subprocess.Popen([sys.executable, "-c", DRIVER, "loop", str(path), str(clips // workers)],
                              cwd=tree, env=_env(tree), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(workers)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("a throughput worker failed")
    return workers * (clips // workers) / (time.perf_counter() - started)


def measure(tree: Path, clip: Path, args: argparse.Namespace) -> dict:
    result: dict = {}
    for name, path in (("30-s clip", clip), ("4-min track", LIBRARY / TRACK)):
        warm = driver(tree, "warm", path, args.warm)
        result[name] = {"cold_s": round(cold(tree, path, args.cold), 3), "warm_wall_s": round(warm["wall"], 3),
                        "warm_cpu_s": round(warm["cpu"], 3), "segments": warm["segments"], "model": warm["model"],
                        "verdict": warm["genre"]}
    result["worker_peak_mb"] = round(max(driver(tree, "worker", p, 1)["peak_mb"]
                                         for p in (clip, LIBRARY / TRACK)), 1)
    result["clips_per_s_2_workers"] = round(throughput(tree, clip, args.clips), 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the tree to compare with")
    parser.add_argument("--cold", type=int, default=3)
    parser.add_argument("--warm", type=int, default=7)
    parser.add_argument("--clips", type=int, default=12, help="clips for the throughput run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict = {"load_average_before": [round(v, 2) for v in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmp:
        clip = thirty_second_clip(Path(tmp))
        base = baseline_tree(args.baseline, Path(tmp))
        report["ours"] = measure(ROOT, clip, args)
        report[f"baseline {args.baseline}"] = measure(base, clip, args)
    report["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    ours, theirs = report["ours"], report[f"baseline {args.baseline}"]
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"load average {report['load_average_before']} -> {report['load_average_after']} (2 cores)")
        print(f"{'':28}{'ours':>12}{'baseline':>12}{'ratio':>8}")
        rows = [(f"{n} {k}", ours[n][k], theirs[n][k]) for n in ("30-s clip", "4-min track")
                for k in ("cold_s", "warm_wall_s", "warm_cpu_s")]
        rows += [("worker peak MB", ours["worker_peak_mb"], theirs["worker_peak_mb"]),
                 ("30-s clips/s, 2 workers", ours["clips_per_s_2_workers"], theirs["clips_per_s_2_workers"])]
        for label, a, b in rows:
            print(f"{label:<28}{a:>12.3f}{b:>12.3f}{a / b if b else float('nan'):>8.2f}")
        for n in ("30-s clip", "4-min track"):
            print(f"{n}: ours {ours[n]['model']} says {ours[n]['verdict']} ({ours[n]['segments']} segments); "
                  f"baseline {theirs[n]['model']} says {theirs[n]['verdict']}")
    missed = []
    if ours["30-s clip"]["warm_wall_s"] > TARGET_WARM_30S:
        missed.append(f"warm 30-s clip {ours['30-s clip']['warm_wall_s']:.3f} s > {TARGET_WARM_30S:g} s")
    if ours["worker_peak_mb"] > TARGET_WORKER_MB:
        missed.append(f"worker peak {ours['worker_peak_mb']:.0f} MB > {TARGET_WORKER_MB:g} MB")
    if ours["30-s clip"]["cold_s"] > COLD_SLACK * theirs["30-s clip"]["cold_s"]:
        missed.append(f"cold start {ours['30-s clip']['cold_s']:.2f} s > baseline "
                      f"{theirs['30-s clip']['cold_s']:.2f} s x {COLD_SLACK}")
    for line in missed:
        print(f"MISSED: {line}", file=sys.stderr)
    if not missed:
        print(f"targets met: warm 30-s clip <= {TARGET_WARM_30S:g} s, worker <= {TARGET_WORKER_MB:g} MB, "
              "cold start no slower than the baseline")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
