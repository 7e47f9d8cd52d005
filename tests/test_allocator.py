"""The bot's freed large blocks go back to the system (core.allocator). Each case runs in a fresh process,
because the setting is for the whole process: it frees one 8 MiB block (which raises glibc's dynamic mmap
threshold to 8 MiB), then makes 64 blocks of 512 KiB, each followed by a small block that stays alive and
pins the heap above it, frees the large ones and reads how much of their 32 MiB the process still holds.
Without the fix it keeps them; with it they were mapped on their own and are gone."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.processes import process_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")

PROGRAM = """
import sys
from core.allocator import keep_large_blocks_mapped

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

if sys.argv[1] == "fixed":
    assert keep_large_blocks_mapped()
first = bytearray(8 << 20)
del first
before = rss_kib()
large, pinned = [], []
for _ in range(64):
    large.append(bytearray(512 << 10))
    pinned.append(bytearray(2048))
del large
print((rss_kib() - before) // 1024)
"""


def kept_mib(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], env=process_env(), capture_output=True,
                          text=True, timeout=120, check=True)
    return int(done.stdout.strip())


def test_freed_large_blocks_go_back_to_the_system() -> None:
    if kept_mib("default") < 24:
        pytest.skip("this C library gives large blocks back by itself (not glibc's dynamic threshold)")
    assert kept_mib("fixed") < 4
