"""CRATEDIGGER_LIBRARY_SEGMENTS: a library track is analysed on that many segments, and changing it has the
next reindex analyse the library again (as a change of model does)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.analysis import Limits, analyse
from core.cli.demo import DEMO_CLIPS
from core.config import Settings
from core.service import Service

pytestmark = pytest.mark.slow
GUILD = 7
CLIP = DEMO_CLIPS / "etr-race1.ogg"  # 15 s: five segments


async def test_library_tracks_are_analysed_on_the_configured_segments(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, workers=1, library_segments=2)
    service = await Service.open(settings)
    try:
        assert (await service.add_to_library(GUILD, [CLIP])).added
        stored = (await service.store.tracks(GUILD))[0].embedding
        assert (await service.reindex(GUILD)).analysed == 0  # up to date
    finally:
        await service.close()
    two, five = (analyse(CLIP, Limits(settings.models_dir, settings.max_clip_seconds, n)) for n in (2, 5))
    assert (two.segments, five.segments) == (2, 5)
    np.testing.assert_allclose(stored, two.embedding, atol=1e-5)
    assert float(np.dot(stored, five.embedding)) < 1 - 1e-4  # the two really differ

    service = await Service.open(settings.with_overrides(library_segments=3))
    try:
        assert (await service.reindex(GUILD)).analysed == 1
        stats = await service.library_stats(GUILD)
        assert stats["analysis_version"].endswith("|segments=3")
    finally:
        await service.close()
