"""The front-end's ONNX graph against other versions of it: outputs and CPU time, side by side in one run.

For each graph: the worst absolute difference of `penultimate` and `tags` from the first graph on real
patches (run as core.runtime.OnnxRunner runs them: 4 at a time), then the CPU time of this process for 16
patches in runs of 4 (the shipped ONNX_CHUNK) and of 16, one thread, the graphs interleaved round by round,
best of --rounds. With --profile, ONNX Runtime's per-node profile of each graph (runs of 4; each node's
median call times its calls, so a call preempted on a shared machine does not dominate).

    git show <commit>:models/frontend_msd_musicnn.onnx > /tmp/before.onnx
    .venv/bin/python benchmarks/bench_frontend_graph.py /tmp/before.onnx models/frontend_msd_musicnn.onnx \\
        --library ../shared/data/library --library ~/.cache/cratedigger/devlib/library [--profile]

Patches: --tracks tracks of each --library (spread over its sorted names), 4 segments each; the demo clips
when no library is given. Exits 1 when the last graph is not --target (default 8 %) cheaper than the first
in runs of 4, or moves an output past --tolerance (default 1e-5).
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from core.audio import AUDIO_EXTENSIONS, load_segments  # noqa: E402
from core.cli.demo import DEMO_CLIPS  # noqa: E402
from core.frontend import OUTPUTS, patches_from_segments  # noqa: E402
from core.runtime import ONNX_CHUNK  # noqa: E402

PATCHES_TIMED = 16
REPEATS = 10


def real_patches(libraries: list[Path], tracks: int) -> np.ndarray:
    files = []
    for library in libraries:
        found = sorted(p for p in library.expanduser().iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
        files += [found[i] for i in np.linspace(0, len(found) - 1, min(tracks, len(found))).astype(int)]
    files = files or sorted(DEMO_CLIPS.glob("*.ogg"))
    return np.concatenate([patches_from_segments(load_segments(f, max_seconds=3600, max_segments=4).audio)
                           for f in files])


def session(path: Path, profile_dir: str | None = None):  # noqa: ANN201 - onnxruntime types
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile_dir:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(profile_dir) / path.stem)
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(sess, x: np.ndarray, chunk: int) -> dict[str, np.ndarray]:  # noqa: ANN001
    name = sess.get_inputs()[0].name
    parts = [sess.run(list(OUTPUTS), {name: x[i:i + chunk]}) for i in range(0, len(x), chunk)]
    return {k: np.concatenate([p[j] for p in parts]) for j, k in enumerate(OUTPUTS)}


def profile(path: Path, x: np.ndarray, top: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        sess = session(path, folder)
        for _ in range(REPEATS):
            run(sess, x, ONNX_CHUNK)
        events = json.loads(Path(sess.end_profiling()).read_text())
    calls: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            calls[(e["args"]["op_name"], e["name"][:-len("_kernel_time")])].append(e["dur"])
    cost = {k: float(np.median(v)) * len(v) for k, v in calls.items()}
    total = sum(cost.values())
    print(f"\nper-node profile of {path} (runs of {ONNX_CHUNK}, {len(x)} patches x {REPEATS}):")
    for (op, node), c in sorted(cost.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {100 * c / total:5.1f} %  {op:14s} {node[:70]}")
    by_op = collections.Counter()
    for (op, _), c in cost.items():
        by_op[op] += c
    print("  by operator: " + ", ".join(f"{op} {100 * c / total:.1f} %" for op, c in by_op.most_common()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("graphs", type=Path, nargs="+", help="the first is the reference")
    parser.add_argument("--library", type=Path, action="append", default=[])
    parser.add_argument("--tracks", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--target", type=float, default=8.0, help="percent less CPU the last graph must take")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    x = real_patches(args.library, args.tracks)
    sessions = [session(p) for p in args.graphs]
    reference = run(sessions[0], x, ONNX_CHUNK)
    worst = 0.0
    print(f"{len(x)} patches")
    for path, sess in zip(args.graphs, sessions):
        out = run(sess, x, ONNX_CHUNK)
        diffs = {k: float(np.abs(out[k] - reference[k]).max()) for k in OUTPUTS}
        worst = max(diffs.values())
        print(f"{path}: worst difference " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    timed = x[:PATCHES_TIMED]
    saved = 0.0
    for chunk in (ONNX_CHUNK, PATCHES_TIMED):
        best = [float("inf")] * len(sessions)
        for _ in range(args.rounds):
            for i, sess in enumerate(sessions):
                run(sess, timed, chunk)
                start = time.process_time()
                for _ in range(REPEATS):
                    run(sess, timed, chunk)
                best[i] = min(best[i], (time.process_time() - start) / REPEATS * 1000)
        for path, ms in zip(args.graphs, best):
            print(f"runs of {chunk:2d}: {ms:6.1f} ms of CPU per {PATCHES_TIMED} patches "
                  f"({100 * (ms / best[0] - 1):+.1f} %)  {path}")
        if chunk == ONNX_CHUNK:
            saved = 100 * (1 - best[-1] / best[0])
    if args.profile:
        for path in args.graphs:
            profile(path, timed, 16)
    ok = saved >= args.target and worst <= args.tolerance
    print(f"last graph: {saved:.1f} % less CPU in runs of {ONNX_CHUNK} (target {args.target} %), worst "
          f"difference {worst:.2e} (tolerance {args.tolerance:.0e}): {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
