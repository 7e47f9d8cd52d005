"""The two labelled sources of the mood model, read and embedded once: 4Q (`../shared/data/mood4q-dev`) and
Emotify (`../shared/data/emotify`).

Each clip is cut and passed through the front-end as an upload is (core.training.genre_data.embed_clips, in
any of its augmentation variants), and summarised as the model reads it (core.mood.track_vector). The
front-end's outputs are cached per variant under `cache_dir`, so every later run costs seconds.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.mood import (
    ENERGY_WORDS,
    GEMS,
    MOODS,
    NOSTALGIA_WORDS,
    QUADRANT_MOOD,
    QUADRANTS,
    mood_z,
    track_vector,
)
from core.training.genre_data import Clip, embed_clips

UNTOUCHED_SHARE = 7
"""One artist in UNTOUCHED_SHARE (by a hash of the name, about 14 %) is set aside: never seen while
choosing the model, scored once at the end."""


@dataclass(frozen=True)
class FourQ:
    """4Q songs: `quadrant` (n,) index into QUADRANTS, `targets` (n, 6) mood labels in MOODS order with
    NaN where a song says nothing about a mood (a Q1/Q2 song without an energy word, for energetic),
    `artists` (n,) the grouping of every split, `genres` the AllMusic genres of each song."""

    files: list[Path]
    songs: list[str]
    artists: np.ndarray
    quadrant: np.ndarray
    targets: np.ndarray
    genres: list[list[str]]
    words: list[set[str]]

    @property
    def untouched(self) -> np.ndarray:
        """Boolean mask of the songs whose artist is set aside."""
        return np.array([_artist_bucket(a) == 0 for a in self.artists])


def _artist_bucket(artist: str) -> int:
    return int(hashlib.sha256(artist.strip().lower().encode()).hexdigest(), 16) % UNTOUCHED_SHARE


def mood_targets(quadrant: str, words: set[str]) -> list[float]:
    """The written definitions (core.mood) of the six moods for one 4Q song."""
    out = []
    for mood in MOODS:
        if mood == "energetic":
            out.append((1.0 if words & ENERGY_WORDS else np.nan) if quadrant == "Q1" else 0.0)
        elif mood == "nostalgic":
            out.append(1.0 if words & NOSTALGIA_WORDS else 0.0)
        else:
            out.append(1.0 if QUADRANT_MOOD[quadrant] == mood else 0.0)
    return out


def read_fourq(data_dir: Path) -> FourQ:
    with open(data_dir / "tracks.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    words = [{w.strip().lower() for w in r["moods"].split(";") if w.strip()} for r in rows]
    return FourQ(
        files=[(data_dir / r["file"]).resolve() for r in rows],
        songs=[r["song"] for r in rows],
        artists=np.array([r["artist"] for r in rows]),
        quadrant=np.array([QUADRANTS.index(r["quadrant"]) for r in rows]),
        targets=np.array([mood_targets(r["quadrant"], w) for r, w in zip(rows, words)]),
        genres=[[g.strip() for g in r["genres"].split(";") if g.strip()] for r in rows],
        words=words,
    )


@dataclass(frozen=True)
class Emotify:
    """Emotify excerpts: `gems` (n, 9) fractions of listeners in GEMS order, `genres` (n,)."""

    files: list[Path]
    track_ids: list[int]
    genres: np.ndarray
    gems: np.ndarray

    @property
    def soft_moods(self) -> np.ndarray:
        """(n, 6) Emotify's reading of the six moods in [0, 1] (core.mood.moods_from_gems)."""
        from scipy.stats import norm

        return norm.cdf(mood_z(self.gems))


def read_emotify(data_dir: Path) -> Emotify:
    with open(data_dir / "tracks.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = tuple(c[: -len("_frac")] for c in rows[0] if c.endswith("_frac"))
    if names != GEMS:
        raise ValueError(f"{data_dir / 'tracks.csv'} lists emotions {names}, expected {GEMS}")
    return Emotify(
        files=[(data_dir / r["file"]).resolve() for r in rows],
        track_ids=[int(r["track_id"]) for r in rows],
        genres=np.array([r["genre"] for r in rows]),
        gems=np.array([[float(r[f"{n}_frac"]) for n in names] for r in rows]),
    )


def _clips(prefix: str, files: list[Path]) -> list[Clip]:
    # genre is unused here (embed_clips caches by path and kind only)
    return [Clip(f"{prefix}:{f.stem}", "pop", prefix, prefix, f) for f in files]


def track_matrix(prefix: str, files: list[Path], variant: str, *, models_dir: Path, cache_dir: Path,
                 workers: int) -> np.ndarray:
    """(n, len(core.mood.TRACK_FEATURE_NAMES)) track vectors of `files` in one augmentation variant, in
    order. A file that cannot be decoded is an error: the labelled sets are known to decode."""
    embedded = embed_clips(_clips(prefix, files), variant, models_dir=models_dir, cache_dir=cache_dir,
                           workers=workers)
    rows = []
    for i, path in enumerate(files):
        mine = embedded.clip == i
        if not mine.any():
            raise ValueError(f"{path} gave no segment")
        rows.append(track_vector(embedded.penultimate[mine], embedded.tags[mine]))
    return np.stack(rows)
