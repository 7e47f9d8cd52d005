"""The front-end in each runtime: milliseconds a patch, and the worst difference from the Keras reference.

LiteRT is the runtime where its wheel exists, ONNX Runtime the fallback elsewhere, Keras (TensorFlow) only
in a training install. A runtime whose package is not installed is reported as such. One thread each, as
the service runs them (several analyses side by side).

    .venv/bin/python benchmarks/bench_runtime.py [--repeats 20]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.cli.demo import DEMO_CLIPS  # noqa: E402
from core.config import DEFAULT_MODELS_DIR  # noqa: E402
from core.frontend import load_frontend  # noqa: E402
from core.runtime import RUNTIMES  # noqa: E402
from core.training.musicnn_port import probe_patches  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed runs of the whole batch")
    args = parser.parse_args()
    patches = probe_patches(sorted(DEMO_CLIPS.glob("*.ogg")))
    outputs: dict[str, dict[str, np.ndarray]] = {}
    print(f"{len(patches)} demo patches, 1 thread, best of {args.repeats}")
    for runtime in RUNTIMES:
        try:
            started = time.perf_counter()
            frontend = load_frontend(DEFAULT_MODELS_DIR, runtime=runtime)
            load_s = time.perf_counter() - started
        except (FileNotFoundError, ImportError) as exc:
            print(f"{runtime:<7} not available: {exc}")
            continue
        outputs[runtime] = frontend(patches)
        best = min(_timed(frontend, patches) for _ in range(args.repeats))
        print(f"{runtime:<7} load {load_s:5.2f} s, {1000 * best / len(patches):6.2f} ms a patch")
    reference = outputs.get("keras")
    for runtime, out in outputs.items():
        if reference is not None and runtime != "keras":
            worst = max(float(np.abs(out[k] - reference[k]).max()) for k in reference)
            print(f"{runtime:<7} worst difference from Keras {worst:.1e}")


def _timed(frontend, patches: np.ndarray) -> float:
    started = time.perf_counter()
    frontend(patches)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
