"""The library map: PCA of the track embeddings, drawn as a PNG for Discord's dark theme, cached per index
version, with the asked clip marked where the same projection puts it."""
from __future__ import annotations

import io
from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio
from matplotlib.image import imread

from core.cli.demo import DEMO_CLIPS
from core.config import Settings
from core.errors import EmptyLibrary
from core.library_map import BACKGROUND, PALETTE, draw_map, fit_projection
from core.service import Service

GUILD, EMPTY_GUILD = 10, 20


def test_pca_finds_the_two_directions_of_largest_spread() -> None:
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(16, 16)))[0]
    vectors = rng.normal(size=(2000, 16)) * np.array([5.0, 2.0] + [0.1] * 14) @ basis.T + 3.0
    projection = fit_projection(vectors)
    for i in range(2):
        assert abs(abs(projection.components[:, i] @ basis[:, i]) - 1) < 1e-3
    points = projection(vectors)
    assert points.shape == (2000, 2)
    np.testing.assert_allclose(points.std(axis=0), [5.0, 2.0], rtol=0.1)
    np.testing.assert_allclose(fit_projection(vectors[::-1]).components, projection.components, atol=1e-6)


def test_a_map_needs_a_track() -> None:
    with pytest.raises(ValueError, match="at least one track"):
        fit_projection(np.zeros((0, 8)))


def _pixels(png: bytes) -> np.ndarray:
    return imread(io.BytesIO(png), format="png")


def test_the_map_is_a_dark_card_with_each_genre_in_its_colour() -> None:
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.normal(0, 0.3, (300, 2)), rng.normal(4, 0.3, (300, 2))]).astype(np.float32)
    png = draw_map(points, ["jazz"] * 300 + ["metal"] * 300, title="Your library: 600 tracks")
    pixels = _pixels(png)
    assert pixels.shape[:2] == (600, 800)  # Discord shows it whole in the preview
    background = tuple(int(BACKGROUND[i:i + 2], 16) / 255 for i in (1, 3, 5))
    np.testing.assert_allclose(pixels[5, -5, :3], background, atol=2 / 255)  # a corner: the dark card
    colours = {tuple(np.round(p[:3] * 255).astype(int)) for p in pixels.reshape(-1, pixels.shape[-1])}
    for genre in ("jazz", "metal"):
        rgb = tuple(int(PALETTE[genre][i:i + 2], 16) for i in (1, 3, 5))
        assert rgb in colours, genre  # the legend's opaque dot, at least
    assert tuple(int(PALETTE["rock"][i:i + 2], 16) for i in (1, 3, 5)) not in colours  # no rock, no rock dot


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    svc = await Service.open(Settings(data_dir=tmp_path_factory.mktemp("data"), workers=2, queue_size=8))
    report = await svc.add_to_library(GUILD, [DEMO_CLIPS])
    assert len(report.added) == len(list(DEMO_CLIPS.glob("*.ogg")))
    yield svc
    await svc.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_the_map_is_cached_per_index_version_and_marks_the_asked_clip(service: Service) -> None:
    first = await service.library_map(GUILD)
    assert first.tracks == 8 and sum(first.genres.values()) == 8 and first.marked is None
    folder = service.settings.data_dir / "maps" / str(GUILD)
    cached = sorted(p.name for p in folder.iterdir())
    assert cached == [f"{first.version}.npz", f"{first.version}.png"]
    (folder / f"{first.version}.png").write_bytes(b"drawn before")  # a second call must read the cache
    assert (await service.library_map(GUILD)).png == b"drawn before"

    marked = await service.library_map(GUILD, mark=str(DEMO_CLIPS / "etr-race1.ogg"))
    assert marked.marked and marked.marked.endswith("etr-race1.ogg") and marked.version == first.version
    assert _pixels(marked.png).shape[:2] == (600, 800)
    similar = await service.similar(GUILD, str(DEMO_CLIPS / "etr-race1.ogg"), k=3, with_map=True)
    assert similar.map_png is not None and _pixels(similar.map_png).shape[:2] == (600, 800)

    await service.reindex(GUILD, full=True)
    await service.library.rebuild_index(GUILD)  # a new index version is published
    second = await service.library_map(GUILD)
    assert second.version != first.version and second.png != b"drawn before"
    assert sorted(p.name for p in folder.iterdir()) == [f"{second.version}.npz", f"{second.version}.png"]


@pytest.mark.asyncio(loop_scope="module")
async def test_an_empty_library_has_no_map(service: Service) -> None:
    with pytest.raises(EmptyLibrary):
        await service.library_map(EMPTY_GUILD)
    report = await service.classify(str(DEMO_CLIPS / "etr-race1.ogg"), guild_id=EMPTY_GUILD, with_map=True)
    assert report.genre and report.map_png is None  # the genre answer stands without a map


@pytest.mark.asyncio(loop_scope="module")
async def test_genre_can_mark_the_clip_on_the_map(service: Service) -> None:
    report = await service.classify(str(DEMO_CLIPS / "etr-race1.ogg"), guild_id=GUILD, with_map=True)
    assert report.map_png is not None and _pixels(report.map_png).shape[:2] == (600, 800)
    assert "map_png" not in report.to_dict()  # the JSON answer carries no image bytes
    assert (await service.classify(str(DEMO_CLIPS / "etr-race1.ogg"), guild_id=GUILD)).map_png is None
