"""A finished pool worker ends without Python's tear-down of every module and object: that tear-down (ONNX
Runtime, numba, an analysis's heap) made every shutdown of a warmed analysis pool, which each command that
analyses waits for, take 0.35-0.73 s (core.analysis._exit_without_teardown). Shown without timing: an object
a task left behind in the worker is never finalized, and the worker still ends, with status 0."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from core.analysis import init_worker

_left_behind: list[object] = []


class _Witness:
    """Writes its file when Python finalizes it: only the interpreter's tear-down would."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __del__(self) -> None:
        Path(self.path).write_text("torn down")


def _leave_a_witness(path: str) -> int:
    import os

    _left_behind.append(_Witness(path))
    return os.getpid()


def test_a_finished_worker_skips_the_interpreters_tear_down(tmp_path: Path) -> None:
    witness = tmp_path / "witness"
    spawn = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(1, mp_context=spawn, initializer=init_worker)
    pool.submit(_leave_a_witness, str(witness)).result(timeout=120)
    [worker] = list(pool._processes.values())  # type: ignore[attr-defined]
    pool.shutdown(wait=True)
    worker.join(timeout=120)
    assert worker.exitcode == 0
    assert not witness.exists()


def test_without_it_the_witness_would_be_finalized(tmp_path: Path) -> None:
    """The check above can fail: a worker set up without init_worker tears down and finalizes it."""
    witness = tmp_path / "witness"
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_leave_a_witness, str(witness)).result(timeout=120)
    assert witness.read_text() == "torn down"
