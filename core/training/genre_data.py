"""Labelled real audio for the genre head, cut and embedded by the front-end as inference would, with the
augmentations an upload calls for.

Sources (all under `../shared/data`, never copied into the repository):
- `gtzan-audio/`: the artist-filtered split's train and valid tracks, laid out as
  `<genre>/<genre>.000NN[.kind].opus` (`MANIFEST.tsv` names split and kind). A folder of whole GTZAN in its
  own layout (`<genre>/<genre>.000NN.wav|au`) works too: split from the split lists, kind "full30".
- `emotify/`: one-minute excerpts of classical, rock and pop (and electronic, which is no GTZAN genre and is
  left out), a second, non-GTZAN check.
- `mood4q-dev/`: commercial songs whose AllMusic genres give weak, set-valued labels (core.training.genre_weak).

Every clip is a group of its own: a track that appears as several kinds (a full 30-s copy and a 2-3-s cut)
is one group, so no split or fold puts one recording on both sides.

Augmentations (`VARIANTS`), each deterministic for a (clip, variant) pair:
- `clean`: as decoded;
- `mp3`: re-encoded as mp3 at 64 or 96 kb/s (commercial previews are served so), then decoded again;
- `gain_noise`: a gain of -12 to +6 dB (clipped as a real file would be) and white noise 20-40 dB below
  the signal;
- `offset`: segment boundaries moved by 0.5-2.5 s (a cut: rotated by a random fraction before the
  repeat-fill), so the head does not learn where a clip starts.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import re
import subprocess
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.analysis import init_worker
from core.audio import decode, ffmpeg_exe, segment, trim_silence
from core.config import PACKAGE_ROOT
from core.constants import GENRES, SAMPLE_RATE, SEGMENT_SAMPLES
from core.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_SHARED = PACKAGE_ROOT.parent / "shared" / "data"
DEFAULT_CACHE = Path.home() / ".cache" / "cratedigger" / "genre-embeddings"
VARIANTS: tuple[str, ...] = ("clean", "mp3", "gain_noise", "offset")
EMOTIFY_GENRES: tuple[str, ...] = ("classical", "rock", "pop")
MAX_CLIP_SECONDS = 120.0
MAX_CLIP_SEGMENTS = 40
"""As inference cuts a clip: at most this many segments, spread over it."""

SPLIT_FILE = "{split}_filtered.txt"
_GTZAN_FILE = re.compile(r"^(?P<genre>[a-z]+)\.(?P<number>\d{5})(?:\.(?P<tag>cut|16k))?\.(?:opus|wav|au)$")
_KIND_BY_TAG = {None: "full30_22k", "cut": "short2to3s_22k", "16k": "full30_16k"}


class BadDataset(UserError):
    """The training or evaluation folder, or its split lists, cannot be used as given."""


def track_id(name: str) -> str:
    """'blues/blues.00012.wav' (the split lists' spelling, whatever the file's extension) -> 'blues/blues.00012'."""
    return re.sub(r"\.(wav|au)$", "", name.strip(), flags=re.IGNORECASE)


def read_split(split_dir: Path, split: str) -> list[str]:
    path = split_dir / SPLIT_FILE.format(split=split)
    if not path.is_file():
        raise BadDataset(f"split list {path} not found (point --split at the gtzan-split folder)")
    return [track_id(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class Clip:
    """One labelled recording. `group` ties together every copy of one track (the unit of splits).

    A weakly-labelled clip (core.training.genre_weak) may be any of the genres in `allowed` (empty: exactly
    `genre`); `check` is the label it is scored against when that is not one of our genres."""

    group: str
    genre: str
    split: str
    kind: str
    path: Path
    allowed: tuple[str, ...] = ()
    check: str = ""

    @property
    def label(self) -> int:
        return GENRES.index(self.genre)

    @property
    def mask(self) -> np.ndarray:
        """(len(GENRES),) 1 for every genre the clip may be, 0 elsewhere."""
        return np.isin(GENRES, self.allowed or (self.genre,)).astype(np.float32)


def gtzan_clips(audio_dir: Path, split_dir: Path) -> list[Clip]:
    """Every clip of a GTZAN-layout folder whose track is in one of the split lists."""
    if not audio_dir.is_dir():
        raise BadDataset(f"no such folder: {audio_dir}")
    split_of: dict[str, str] = {}
    for split in ("train", "valid", "test"):
        for tid in read_split(split_dir, split):
            if split_of.setdefault(tid, split) != split:
                raise BadDataset(f"{tid} is in both the {split_of[tid]} and the {split} split lists")
    clips = []
    for genre in GENRES:
        for path in sorted((audio_dir / genre).glob(f"{genre}.*")):
            match = _GTZAN_FILE.match(path.name)
            if not match:
                continue
            tid = track_id(f"{genre}/{genre}.{match['number']}.wav")
            if tid not in split_of:
                continue
            kind = _KIND_BY_TAG[match["tag"]] if path.suffix == ".opus" else "full30"
            clips.append(Clip(f"gtzan:{tid}", genre, split_of[tid], kind, path))
    if not clips:
        raise BadDataset(f"{audio_dir} holds no GTZAN clips named in the split lists of {split_dir}")
    return clips


def emotify_clips(emotify_dir: Path, genres: Sequence[str] = EMOTIFY_GENRES) -> list[Clip]:
    """Emotify excerpts of the GTZAN genres it shares, split "emotify" (a check set, cross-fitted)."""
    with (emotify_dir / "tracks.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["genre"] in genres]
    return [Clip(f"emotify:{int(r['track_id']):03d}", r["genre"], "emotify", "emotify", emotify_dir / r["file"])
            for r in rows]


def _seed(clip: Clip, variant: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{clip.group}|{clip.kind}|{variant}".encode()).digest()[:4], "little")


def _mp3_roundtrip(y: np.ndarray, kbps: int) -> np.ndarray:
    """Encode as mp3 at `kbps` and decode again, through the bundled ffmpeg, all in pipes."""
    exe = ffmpeg_exe()
    raw = ["-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1"]
    mp3 = subprocess.run([exe, "-nostdin", "-v", "error", *raw, "-i", "pipe:0", "-c:a", "libmp3lame",
                          "-b:a", f"{kbps}k", "-f", "mp3", "pipe:1"],
                         input=y.astype("<f4").tobytes(), capture_output=True, check=True).stdout
    pcm = subprocess.run([exe, "-nostdin", "-v", "error", "-f", "mp3", "-i", "pipe:0", *raw, "pipe:1"],
                         input=mp3, capture_output=True, check=True).stdout
    return np.frombuffer(pcm[: len(pcm) // 4 * 4], "<f4").astype(np.float32)


def augment(y: np.ndarray, variant: str, rng: np.random.Generator) -> np.ndarray:
    """The waveform of one variant (see the module docstring); `clean` and `offset` leave samples alone."""
    if variant == "mp3":
        return _mp3_roundtrip(y, int(rng.choice([64, 96])))
    if variant == "gain_noise":
        gained = y * np.float32(10 ** (rng.uniform(-12, 6) / 20))
        rms = float(np.sqrt(np.mean(gained.astype(np.float64) ** 2))) or 1e-4
        noise = rng.standard_normal(y.size).astype(np.float32) * np.float32(rms * 10 ** (-rng.uniform(20, 40) / 20))
        return np.clip(gained + noise, -1.0, 1.0).astype(np.float32)
    return y


def clip_segments(clip: Clip, variant: str) -> np.ndarray:
    """The clip's segments for `variant`, cut by core.audio.segment as inference cuts an upload."""
    rng = np.random.default_rng(_seed(clip, variant))
    y = trim_silence(decode(clip.path, max_seconds=MAX_CLIP_SECONDS), name=clip.path.name)
    y = augment(y, variant, rng)
    if variant == "offset":
        if y.size > 2 * SEGMENT_SAMPLES:
            y = y[int(rng.uniform(0.5, 2.5) * SAMPLE_RATE):]
        else:
            y = np.roll(y, int(rng.uniform(0.2, 0.8) * y.size))
    return segment(y, max_segments=MAX_CLIP_SEGMENTS).audio


@dataclass(frozen=True)
class Embedded:
    """Per-segment front-end outputs of many clips: `penultimate` (n, 200), `tags` (n, 50), `clip` (n,)
    index into `clips`, `position` (n,) segment index within its clip."""

    penultimate: np.ndarray
    tags: np.ndarray
    clip: np.ndarray
    position: np.ndarray
    clips: list[Clip]

    def sequences(self) -> list[np.ndarray]:
        """Each clip's (segments, 200) sequence, in clip order."""
        order = np.lexsort((self.position, self.clip))
        bounds = np.searchsorted(self.clip[order], np.arange(len(self.clips) + 1))
        return [self.penultimate[order[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]


def _embed_one(job: tuple[Clip, str, Path]) -> tuple[np.ndarray, np.ndarray] | str:
    """In a worker set up by core.analysis.init_worker, whose front-end is loaded once (core.analysis)."""
    from core.analysis import frontend

    clip, variant, models_dir = job
    try:
        out = frontend(models_dir).embed_segments(clip_segments(clip, variant))
    except UserError as exc:
        return f"{clip.path}: {exc}"
    return out["penultimate"], out["tags"]


def frontend_digest(models_dir: Path) -> str:
    """Names the front-end by what it computes (its outputs on a fixed probe, rounded), not by its file's
    bytes: a re-conversion of the same weights keeps the cache valid, other weights invalidate it."""
    from core.frontend import load_frontend

    probe = np.random.default_rng(0).uniform(0, 3, (2, 187, 96)).astype(np.float32)
    out = load_frontend(models_dir)(probe)
    rounded = np.round(np.concatenate([out["penultimate"], out["tags"]], axis=1), 3)
    return hashlib.sha256(rounded.tobytes()).hexdigest()[:12]


def embed_clips(clips: Sequence[Clip], variant: str, *, models_dir: Path, cache_dir: Path = DEFAULT_CACHE,
                workers: int = 2) -> Embedded:
    """Front-end outputs of every clip for one variant, cached by (clips, variant, front-end weights).

    A clip that cannot be decoded is logged and left out (it keeps its place in `clips`, with no segment)."""
    key = hashlib.sha256("\n".join(f"{c.path}|{c.kind}" for c in clips).encode()).hexdigest()[:12]
    cache = cache_dir / f"{variant}-{key}-{frontend_digest(models_dir)}.npz"
    if cache.is_file():
        data = np.load(cache)
        return Embedded(data["penultimate"], data["tags"], data["clip"], data["position"], list(clips))
    pens, tags, owners, positions = [], [], [], []
    jobs = [(c, variant, models_dir) for c in clips]
    with ProcessPoolExecutor(max_workers=workers, initializer=init_worker) as pool:
        results = pool.map(_embed_one, jobs, chunksize=4)
        for i, result in enumerate(tqdm(results, total=len(jobs), desc=f"embed {variant}", disable=None)):
            if isinstance(result, str):
                log.warning("skipping %s", result)
                continue
            pen, tag = result
            pens.append(pen)
            tags.append(tag)
            owners.append(np.full(len(pen), i))
            positions.append(np.arange(len(pen)))
    embedded = Embedded(np.concatenate(pens), np.concatenate(tags), np.concatenate(owners),
                        np.concatenate(positions), list(clips))
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, penultimate=embedded.penultimate, tags=embedded.tags, clip=embedded.clip,
             position=embedded.position)
    return embedded

