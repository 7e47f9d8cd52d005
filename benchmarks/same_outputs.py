"""Whether a change keeps every output of the analysis: each track of the dev libraries analysed with the code
of a git ref (main by default) and with this working tree, and every output compared bit for bit.

For speed work whose rule is "the outputs stay what they are". Per track, each side records:
- a library track as the service analyses it (16 segments by default): its segments' samples and starts,
  the front-end's input patches, and the whole analysis (genre, tags, mood, the track vector, each segment's
  embedding, tags and start, the fingerprint of the analysed sections);
- the same file as a /similar query (`QUERY_HOP`, the whole file decoded and trimmed, overlapping segments,
  the fingerprint of the whole clip).

Each side runs in a process of its own with its tree first on the path, its own models, and one thread.
Prints how many tracks were compared and, for each output that differs, on how many tracks and by how much
at most; exits 1 when anything differs.

    .venv/bin/python benchmarks/same_outputs.py [--ref main] [--library DIR ...]

The libraries default to the shared one (../shared/data/library) and the Debian one
(benchmarks/fetch_devlib.py); those that are absent are left out. About 1 s of CPU a track a side.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = (ROOT.parent / "shared" / "data" / "library",
             Path.home() / ".cache" / "cratedigger" / "devlib" / "library")
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                     "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}


def plain(value: Any) -> Any:
    """Dataclasses as dicts, so that either side's records read without the other's classes."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def dump(root: Path, libraries: list[Path], out: Path) -> None:
    """Analyse every track with the code under `root` (already first on sys.path) into `out`/NNNN.pkl."""
    from threadpoolctl import threadpool_limits

    import core.analysis
    from core.analysis import Limits, analyse
    from core.audio import AUDIO_EXTENSIONS, load_segments
    from core.config import Settings
    from core.frontend import patches_from_segments
    from core.segment_match import QUERY_HOP

    settings = Settings()
    core.analysis._inference_threads = 1
    library = Limits(root / "models", settings.max_clip_seconds, settings.library_segments)
    query = Limits(root / "models", settings.max_clip_seconds, settings.max_segments)
    paths = [p for folder in libraries for p in sorted(folder.iterdir())
             if p.suffix.lower() in AUDIO_EXTENSIONS]
    with threadpool_limits(limits=1):
        for i, path in enumerate(paths):
            segments = load_segments(path, max_seconds=library.max_seconds, max_segments=library.max_segments)
            record = {
                "segments": segments.audio, "starts": segments.starts,
                "patches": patches_from_segments(segments.audio),
                "library": plain(analyse(path, library, fingerprint=True)),
                "query": plain(analyse(path, query, genre=False, mood=True, fingerprint=True, hop=QUERY_HOP)),
            }
            with open(out / f"{i:04d}.pkl", "wb") as fh:
                pickle.dump((str(path), record), fh)


@dataclasses.dataclass
class Differences:
    """Per output (a path into the record): the tracks where it differs and the largest difference."""

    tracks: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    largest: dict[str, float | str] = dataclasses.field(default_factory=dict)

    def add(self, key: str, track: str, by: float | str) -> None:
        tracks = self.tracks.setdefault(key, [])
        if not tracks or tracks[-1] != track:  # a list's items share their key
            tracks.append(track)
        old = self.largest.get(key, 0.0)
        self.largest[key] = max(old, by) if isinstance(by, float) and isinstance(old, float) else by

    def compare(self, ours: Any, theirs: Any, key: str, track: str) -> None:
        if isinstance(ours, dict) and isinstance(theirs, dict) and ours.keys() == theirs.keys():
            for name in ours:
                self.compare(ours[name], theirs[name], f"{key}.{name}", track)
        elif isinstance(ours, (list, tuple)) and isinstance(theirs, (list, tuple)) \
                and len(ours) == len(theirs):
            for a, b in zip(ours, theirs):
                self.compare(a, b, f"{key}[]", track)
        elif isinstance(ours, np.ndarray) or isinstance(theirs, np.ndarray):
            a, b = np.asarray(ours), np.asarray(theirs)
            if a.shape != b.shape or a.dtype != b.dtype:
                self.add(key, track, f"{a.shape} {a.dtype} against {b.shape} {b.dtype}")
            elif a.tobytes() != b.tobytes():
                by = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
                self.add(key, track, by)
        elif isinstance(ours, float) and isinstance(theirs, float):
            if ours != theirs and not (math.isnan(ours) and math.isnan(theirs)):  # NaN equals NaN here
                self.add(key, track, abs(ours - theirs))
        elif ours != theirs:
            self.add(key, track, f"{ours!r} against {theirs!r}")


def run_side(root: Path, libraries: list[Path], out: Path) -> None:
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, __file__, "--dump", str(out), "--root", str(root),
               *[arg for folder in libraries for arg in ("--library", str(folder))]]
    subprocess.run(command, env=env, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main", help="the git ref whose code gives the reference outputs")
    parser.add_argument("--library", type=Path, action="append", help="a folder of audio files (repeatable)")
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)  # one side's run, in its own process
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    libraries = [p for p in (args.library or LIBRARIES) if p.is_dir()]
    if args.dump is not None:
        sys.path.insert(0, str(args.root))
        dump(args.root, libraries, args.dump)
        return 0
    if not libraries:
        print("no library to analyse (see --library)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="same-outputs-") as tmp:
        reference, ours, theirs = Path(tmp) / "ref", Path(tmp) / "ours", Path(tmp) / "theirs"
        for folder in (reference, ours, theirs):
            folder.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.ref], capture_output=True,
                                 check=True)
        subprocess.run(["tar", "-x", "-C", str(reference)], input=archive.stdout, check=True)
        run_side(reference, libraries, theirs)
        run_side(ROOT, libraries, ours)
        differences, count = Differences(), 0
        for mine in sorted(ours.glob("*.pkl")):
            with open(mine, "rb") as a, open(theirs / mine.name, "rb") as b:
                (path, record), (their_path, their_record) = pickle.load(a), pickle.load(b)
            if path != their_path:
                raise RuntimeError(f"the two sides listed other tracks: {path} against {their_path}")
            differences.compare(record, their_record, "", Path(path).name)
            count += 1
    print(f"{count} tracks of {', '.join(map(str, libraries))}: this tree against {args.ref}")
    for key, tracks in differences.tracks.items():
        print(f"  {key}: differs on {len(tracks)} tracks, at most {differences.largest[key]} "
              f"(e.g. {tracks[:3]})")
    print("every output identical, bit for bit" if not differences.tracks else "OUTPUTS DIFFER")
    return 0 if not differences.tracks else 1


if __name__ == "__main__":
    sys.exit(main())
