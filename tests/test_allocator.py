"""Freed large blocks go back to the system (core.allocator), in the bot and in its helper processes. Each
case runs in a fresh process, because the setting is for the whole process: it frees one 8 MiB block (which
raises glibc's dynamic mmap threshold to 8 MiB), then makes 64 blocks of 512 KiB, each followed by a small
block that stays alive and pins the heap above it, frees the large ones and reads how much of their 32 MiB
the process still holds. Without the fix it keeps them; with it they were mapped on their own and are gone.
A real analysis worker is then read between real analyses."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.analysis import Limits, analyse
from core.config import Settings
from core.jobs.fetches import FetchPool
from core.jobs.pool import ProcessPool
from tests.conftest import REPO_ROOT
from tests.processes import process_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")

RSS_KIB = """
import sys

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def free_pinned(count, size):
    # count blocks of size bytes, each followed by a small block kept alive; the big ones freed
    blocks, pinned = [], []
    for _ in range(count):
        blocks.append(bytearray(size))
        pinned.append(bytearray(2048))
    del blocks
    return pinned
"""

PROGRAM = RSS_KIB + """
from core.allocator import keep_large_blocks_mapped

if sys.argv[1] == "fixed":
    assert keep_large_blocks_mapped()
first = bytearray(8 << 20)
del first
before = rss_kib()
pinned = free_pinned(64, 512 << 10)
print((rss_kib() - before) // 1024)
"""


def kept_mib(mode: str, program: str = PROGRAM) -> int:
    """What a fresh process running `program` in `mode` still holds of the blocks it freed, in MiB."""
    done = subprocess.run([sys.executable, "-c", program, mode], env=process_env(), capture_output=True,
                          text=True, timeout=120, check=True)
    return int(done.stdout.strip())


def test_freed_large_blocks_go_back_to_the_system() -> None:
    if kept_mib("default") < 24:
        pytest.skip("this C library gives large blocks back by itself (not glibc's dynamic threshold)")
    assert kept_mib("fixed") < 4


TRIM_PROGRAM = RSS_KIB + """
from core.allocator import return_free_heap

before = rss_kib()
pinned = free_pinned(512, 64 << 10)
if sys.argv[1] == "trimmed":
    assert return_free_heap()
print((rss_kib() - before) // 1024)
"""


def test_a_link_worker_hands_its_fragmented_heap_back() -> None:
    """32 MiB of 64-KiB blocks (under the mmap threshold, so from the heap), each pinned by a small block
    that stays alive, then freed: the process keeps those pages until malloc_trim hands them back."""
    if kept_mib("default", TRIM_PROGRAM) < 24:
        pytest.skip("this C library gives freed heap pages back by itself")
    assert kept_mib("trimmed", TRIM_PROGRAM) < 4


class _Noted:
    """In a reference cycle with itself; writes `path` when the garbage collector frees it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.me = self

    def __del__(self) -> None:
        Path(self.path).write_text("collected")


def _leave_a_cycle(path: str) -> None:
    """A link job that leaves cyclic garbage, as yt-dlp's objects do, in a worker whose automatic collection
    of it will not come soon (the thresholds raised, as a worker that allocates little between jobs)."""
    import gc

    gc.set_threshold(10**9, 10**9, 10**9)
    _Noted(path)


async def test_a_link_worker_collects_the_cycles_a_job_left(tmp_path: Path) -> None:
    """What a job leaves in cycles holds C memory (sockets, TLS contexts) that tracemalloc does not see: in
    bench_soak the link workers grew ~3 MiB per 1 000 interactions until each job ended with a collection."""
    marker = tmp_path / "marker"
    pool = FetchPool(Settings(data_dir=tmp_path, fetch_workers=1))
    try:
        await pool.run(_leave_a_cycle, str(marker))
        assert marker.exists() and marker.read_text() == "collected"
    finally:
        await pool.close()


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _analysed(path: str, limits: Limits, hop: float | None) -> int:
    return analyse(path, limits, hop=hop).segments


async def test_an_analysis_worker_holds_the_same_memory_between_jobs(tmp_path: Path) -> None:
    """A worker's memory between two analyses must not depend on what it analysed before. Left alone, each
    clip's freed arrays raised glibc's mmap threshold, later arrays came from the heap and stayed there
    once freed: the worker's RSS between jobs moved by ~11 MiB with the clip it had last analysed (in
    bench_soak its slope scattered from -3.4 to +3.0 MiB per 1 000 interactions). Each task now ends with
    the heap trimmed (core.jobs.pool); without that, this fails."""
    clips = sorted((REPO_ROOT / "demo" / "clips").glob("*.ogg"))
    settings = Settings(data_dir=tmp_path, workers=1)
    pool = ProcessPool(settings)
    try:
        between: list[float] = []
        for _ in range(2):  # the first round loads what each kind of analysis needs the first time
            between.clear()
            for clip in clips:
                for hop in (None, 1.5):  # a track's analysis, a /similar query's
                    assert await pool.run(_analysed, str(clip), Limits.of(settings), hop) > 0
                    between.append(await pool.run(_rss_mib))
        assert max(between) - min(between) < 3, [round(mib) for mib in between]
    finally:
        await pool.close()
