"""A folder in GTZAN's layout, split by track with the artist-filtered lists, cut into MFCC sequences.

Layout: `<genre>/<genre>.<number>.wav|au`, genre one of GENRES. The split lists name tracks as
`blues/blues.00012.wav` whatever the file's extension, so tracks are matched on `<genre>/<stem>`. Nothing
here assumes GTZAN's size: a folder holding a few tracks per genre, with split lists that name them, works the
same way (the tests build one). Tracks the lists name but the folder lacks are counted and logged, not
fatal; a split left empty is.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.audio import load_segments
from core.config import PACKAGE_ROOT
from core.constants import GENRES
from core.errors import UserError
from core.features import mfcc_sequences

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "valid", "test")
DEFAULT_SPLIT_DIR = PACKAGE_ROOT.parent / "shared" / "data" / "gtzan-split"
SPLIT_FILE = "{split}_filtered.txt"
TRACK_FILE = re.compile(r"^(?P<genre>[a-z]+)\.(?P<number>\d+)\.(?:wav|au)$", re.IGNORECASE)

MAX_TRACK_SECONDS = 600.0
MAX_TRACK_SEGMENTS = 20
"""GTZAN's tracks are 30 s (10 segments); a longer track in such a folder gives this many segments spread
over its length, as inference would, so that no track outweighs the others by its length alone."""


class BadDataset(UserError):
    """The training or evaluation folder, or its split lists, cannot be used as given."""


@dataclass(frozen=True)
class Track:
    track_id: str
    """`<genre>/<genre>.<number>`, the split lists' name without extension."""
    genre: str
    path: Path

    @property
    def label(self) -> int:
        return GENRES.index(self.genre)


@dataclass(frozen=True)
class SegmentSet:
    """MFCC sequences of many tracks: `x` (n, frames, N_MFCC) float32, `y` (n,) genre index, `track` (n,)
    index into `tracks` (which segment came from which track: the unit of every split and every verdict)."""

    x: np.ndarray
    y: np.ndarray
    track: np.ndarray
    tracks: list[Track]

    def __len__(self) -> int:
        return int(self.x.shape[0])


def track_id(name: str) -> str:
    """'blues/blues.00012.wav' or '.au' -> 'blues/blues.00012'."""
    return re.sub(r"\.(wav|au)$", "", name.strip(), flags=re.IGNORECASE)


def find_tracks(data_dir: Path) -> list[Track]:
    """Every `<genre>/<genre>.<number>.wav|au` under `data_dir` whose genre is one of GENRES."""
    if not data_dir.is_dir():
        raise BadDataset(f"no such folder: {data_dir}")
    tracks = []
    for genre in GENRES:
        folder = data_dir / genre
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            match = TRACK_FILE.match(path.name)
            if match and match["genre"].lower() == genre and path.is_file():
                tracks.append(Track(f"{genre}/{path.stem}", genre, path))
    if not tracks:
        raise BadDataset(f"{data_dir} holds no tracks in GTZAN's layout (<genre>/<genre>.00000.wav|au, "
                         f"genre one of {', '.join(GENRES)})")
    return tracks


def read_split(split_dir: Path, split: str) -> list[str]:
    path = split_dir / SPLIT_FILE.format(split=split)
    if not path.is_file():
        raise BadDataset(f"split list {path} not found (point --split at the gtzan-split folder)")
    return [track_id(line) for line in path.read_text().splitlines() if line.strip()]


def split_tracks(tracks: Sequence[Track], split_dir: Path,
                 splits: Iterable[str] = SPLITS) -> dict[str, list[Track]]:
    """The tracks of each split, in the lists' order. A track in two lists is a broken split: refused."""
    by_id = {t.track_id: t for t in tracks}
    result: dict[str, list[Track]] = {}
    seen: dict[str, str] = {}
    for split in splits:
        ids = read_split(split_dir, split)
        for tid in ids:
            if tid in seen and seen[tid] != split:
                raise BadDataset(f"{tid} is in both the {seen[tid]} and the {split} split lists")
            seen[tid] = split
        result[split] = [by_id[tid] for tid in ids if tid in by_id]
        missing = len(ids) - len(result[split])
        if missing:
            log.info("%s split: %d of %d listed tracks are not in the folder", split, missing, len(ids))
        if not result[split]:
            raise BadDataset(f"none of the {len(ids)} tracks of the {split} split list is in the folder")
    unused = len(tracks) - sum(len(v) for v in result.values())
    if unused:
        log.info("%d tracks of the folder are in none of the split lists and are not used", unused)
    return result


def load_segment_set(tracks: Sequence[Track], *, description: str = "segments") -> SegmentSet:
    """Decode, trim and cut every track as inference does, then compute its MFCC sequences.

    A track that cannot be decoded (GTZAN has a damaged file in some copies) is logged and left out."""
    xs, ys, owners, kept = [], [], [], []
    for track in tqdm(tracks, desc=description, unit="track", disable=None):
        try:
            segments = load_segments(track.path, max_seconds=MAX_TRACK_SECONDS,
                                     max_segments=MAX_TRACK_SEGMENTS)
        except UserError as exc:
            log.warning("skipping %s: %s", track.path, exc)
            continue
        xs.append(mfcc_sequences(segments.audio))
        ys.append(np.full(len(segments), track.label, dtype=np.int64))
        owners.append(np.full(len(segments), len(kept), dtype=np.int64))
        kept.append(track)
    if not kept:
        raise BadDataset(f"none of the {len(tracks)} tracks could be decoded")
    return SegmentSet(np.concatenate(xs), np.concatenate(ys), np.concatenate(owners), kept)
