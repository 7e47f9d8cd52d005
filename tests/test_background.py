"""Helper processes must not compete with the bot's event loop: every thread niced, one BLAS thread."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from core.analysis import MAX_INFERENCE_THREADS, WORKER_NICENESS, init_worker


def _thread_priorities_and_blas() -> tuple[dict[int, int], list[int]]:
    import numpy as np  # noqa: F401  (the BLAS pool must be the one numpy loaded)
    from threadpoolctl import threadpool_info

    from core.background import thread_ids

    priorities = {tid: os.getpriority(os.PRIO_PROCESS, tid) for tid in thread_ids()}
    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return priorities, blas


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="per-thread priorities need Linux's /proc")
def test_worker_threads_are_all_niced_and_blas_is_single_threaded():
    base = os.getpriority(os.PRIO_PROCESS, 0)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn, initializer=init_worker) as pool:
        priorities, blas = pool.submit(_thread_priorities_and_blas).result(timeout=120)
    assert len(priorities) >= 1
    assert all(nice >= max(base, WORKER_NICENESS) for nice in priorities.values()), priorities
    assert blas and all(n == 1 for n in blas), blas


def _frontend_runtime_and_threads() -> tuple[str, int]:
    from core.analysis import frontend
    from tests.conftest import REPO_ROOT

    loaded = frontend(REPO_ROOT / "models")
    return loaded.runtime, loaded.runner._session.get_session_options().intra_op_num_threads


def test_a_pool_worker_runs_the_front_end_on_one_onnx_runtime_thread():
    """Its sibling workers have the other cores; left at 0, ONNX Runtime would take every core in each."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn, initializer=init_worker) as pool:
        in_worker = pool.submit(_frontend_runtime_and_threads).result(timeout=120)
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:  # a one-clip process (the CLI): every core, up to 4
        alone = pool.submit(_frontend_runtime_and_threads).result(timeout=120)
    assert in_worker == ("onnx", 1)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    assert alone == ("onnx", min(MAX_INFERENCE_THREADS, cores))


SERVING_PROCESS = """
import asyncio, json, sys
from pathlib import Path
import numpy as np
from threadpoolctl import threadpool_info
from core.config import Settings
from core.service import Service

def blas():
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

async def main():
    before = blas()
    service = await Service.open(Settings(data_dir=Path(sys.argv[1]), workers=1))
    try:
        print(json.dumps([before, blas()]))
    finally:
        await service.close()

asyncio.run(main())
"""


def test_the_serving_process_keeps_one_blas_thread(tmp_path):
    """OpenBLAS's threads spin between calls: in the bot or CLI, between a query's small products, they took
    a core's worth of CPU from the analysis workers the service was waiting on."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", SERVING_PROCESS, str(tmp_path)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert before and all(n == 2 for n in before), before  # the check can see a pool of two
    assert after and all(n == 1 for n in after), after
