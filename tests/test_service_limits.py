"""The worker pool's guarantees: a task that overruns its time bound is stopped, one that wants more memory
than the cap is refused, a worker that dies does not take the service down, and the service keeps answering
afterwards."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from core.config import Settings
from core.errors import TooLarge, TooSlow, UnsupportedAudio
from core.service import Service
from tests.audio_files import write_audio
from tests.conftest import synth_tone


async def test_overrunning_task_is_killed_and_service_recovers(tmp_path: Path) -> None:
    service = await Service.open(Settings(data_dir=tmp_path / "data", workers=1, task_timeout_seconds=15))
    try:
        started = time.perf_counter()
        with pytest.raises(TooSlow, match="longer than 15 s"):
            await service._run(time.sleep, 60)  # stands in for a decoder stuck on a crafted file
        assert time.perf_counter() - started < 30
        clip = write_audio(tmp_path / "clip.wav", synth_tone(4.0))
        report = await service.classify(clip)  # a fresh worker answers
        assert report.segments == 1
    finally:
        await service.close()


async def test_worker_that_dies_is_replaced(tmp_path: Path) -> None:
    service = await Service.open(Settings(data_dir=tmp_path / "data", workers=1))
    try:
        with pytest.raises(UnsupportedAudio, match="crash"):
            await service._run(os._exit, 3)  # stands in for a decoder segfault
        clip = write_audio(tmp_path / "clip.wav", synth_tone(4.0))
        assert (await service.classify(clip)).segments == 1
    finally:
        await service.close()


def allocate(n_bytes: int) -> int:
    """Stands in for a decoder that a crafted header talks into allocating a huge buffer."""
    return len(bytearray(n_bytes))


async def test_task_past_the_memory_cap_is_refused_and_service_recovers(tmp_path: Path) -> None:
    # 3 GiB would fit in this machine's 24 GiB; only the workers' 1.5 GiB address-space cap refuses it.
    service = await Service.open(Settings(data_dir=tmp_path / "data", workers=1, worker_memory_mb=1536))
    try:
        with pytest.raises(TooLarge, match="1536 MB of memory"):
            await service._run(allocate, 3 * 2**30)
        clip = write_audio(tmp_path / "clip.wav", synth_tone(4.0))
        assert (await service.classify(clip)).segments == 1  # the same worker, still healthy
    finally:
        await service.close()
