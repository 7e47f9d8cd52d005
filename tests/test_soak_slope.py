"""bench_soak's memory slope (benchmarks/bench_soak.py): what it must see and what it must not.

A reading catches a process with work in hand (an analysis worker holding a clip's arrays: 10 to 25 MiB
over its floor) or between jobs. Fitted by least squares, two such readings near the end of a 2 000 run
moved a flat worker's slope by several MiB per 1 000; a leak moves every reading and must be measured whole.
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from benchmarks.bench_soak import MemorySample, slope_per_1000

PID = 4242
WARMUP = 500


def readings(leak_mib_per_1000: float, busy: list[bool], seed: int = 7) -> list[MemorySample]:
    """One reading every 25 interactions: a floor of 104 MiB rising by the leak, plus work in hand when busy."""
    rng = random.Random(seed)
    return [MemorySample(at=float(i), answered=WARMUP + 25 * i,
                         rss_kib={PID: int(1024 * (104 + leak_mib_per_1000 * 25 * i / 1000
                                                   + (rng.uniform(10, 25) if caught else 0)))})
            for i, caught in enumerate(busy)]


def least_squares(samples: list[MemorySample]) -> float:
    xs = [s.answered for s in samples]
    return float(np.polyfit(xs, [s.rss_kib[PID] / 1024 for s in samples], 1)[0] * 1000)


def test_a_flat_worker_caught_mid_job_near_the_end_is_flat() -> None:
    busy = [False] * 50 + [True, False, True, False, True, True]
    samples = readings(0.0, busy)
    assert least_squares(samples) > 3  # what the soak reported before, for the same readings
    assert slope_per_1000(samples, WARMUP, PID) == pytest.approx(0, abs=0.05)


@pytest.mark.parametrize("busy_share", [0.0, 0.3, 0.6])
def test_a_leak_is_measured_whole_however_often_a_worker_is_caught_working(busy_share: float) -> None:
    rng = random.Random(3)
    samples = readings(3.0, [rng.random() < busy_share for _ in range(60)])
    assert slope_per_1000(samples, WARMUP, PID) == pytest.approx(3.0, abs=0.8)


def test_readings_before_the_warm_up_ends_are_left_out() -> None:
    warm = [MemorySample(at=-1.0, answered=a, rss_kib={PID: 50 * 1024}) for a in (0, 100, 200)]
    assert slope_per_1000(warm + readings(0.0, [False] * 20), WARMUP, PID) == pytest.approx(0, abs=1e-9)
