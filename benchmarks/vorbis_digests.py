"""Digests of every sample core.ogg_vorbis and core.audio give on the dev libraries, to show a change to the
Ogg Vorbis reader keeps them bit for bit.

For each audio file of each --library: the whole-file decode (`core.audio.decode`) and `load_segments` at
--segments (the path a library track takes); for each Ogg file besides, `OggVorbis`'s header figures (or its
refusal) and the SHA-256 of its whole read and of reads from random points (fixed per file name, out of
order, one reader for all, as the sections path reads). `--save FILE` writes them as JSON, `--against FILE`
compares with a saved run and prints every difference; the exit code is 1 when anything differs. Also
printed: the files whose sections fall back to a whole-file decode, with core.audio's reason.

    .venv/bin/python benchmarks/vorbis_digests.py --save /tmp/before.json   # on the old code
    .venv/bin/python benchmarks/vorbis_digests.py --against /tmp/before.json  # on the new
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_vorbis import add_library_option, library_paths  # noqa: E402
from core import audio  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.ogg_vorbis import OggVorbis, VorbisUnreadable  # noqa: E402

READS = 12
"""Random reads a file, of 1 to 200 000 frames."""


def _digest(*arrays: np.ndarray) -> str:
    sha = hashlib.sha256()
    for array in arrays:
        sha.update(str((array.dtype, array.shape)).encode())
        sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()[:24]


def _outcome(fn: Any) -> str:
    """The digest of what `fn` returns, or the error it raises."""
    try:
        result = fn()
    except (VorbisUnreadable, UserError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if isinstance(result, audio.Segments):
        return _digest(result.audio, result.starts, np.array([result.clip_seconds]))
    return _digest(result)


def reader_digests(path: Path) -> dict[str, str]:
    try:
        reader = OggVorbis(path)
    except VorbisUnreadable as exc:
        return {"open": f"VorbisUnreadable: {exc}"}
    found = {"open": f"{reader.samplerate} Hz, {reader.channels} channels, {reader.frames} frames"}
    found["whole"] = _outcome(lambda: reader.read(0, reader.frames))
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    for i in range(READS):
        first = int(rng.integers(0, reader.frames))
        count = int(rng.integers(1, 200_000))
        found[f"read {i} ({first}, {count})"] = _outcome(lambda: reader.read(first, count))
    tail = max(0, reader.frames - 5_000)
    found[f"tail ({tail}, 10000)"] = _outcome(lambda: reader.read(tail, 10_000))
    return found


class _Reasons(logging.Handler):
    """core.audio's debug lines for one file: why its sections fell back, if they did."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def file_digests(path: Path, segments: int) -> dict[str, Any]:
    reasons = _Reasons()
    logger = logging.getLogger("core.audio")
    logger.addHandler(reasons)
    logger.setLevel(logging.DEBUG)
    try:
        found: dict[str, Any] = {
            "load_segments": _outcome(lambda: audio.load_segments(path, max_seconds=1200,
                                                                  max_segments=segments))}
    finally:
        logger.removeHandler(reasons)
    found["fallback"] = [line for line in reasons.lines if "whole file" in line or "trying" in line]
    found["decode"] = _outcome(lambda: audio.decode(path, max_seconds=1200))
    if path.suffix.lower() in (".ogg", ".oga"):
        found["reader"] = reader_digests(path)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_library_option(parser)
    parser.add_argument("--segments", type=int, default=16)
    parser.add_argument("--save", type=Path)
    parser.add_argument("--against", type=Path)
    args = parser.parse_args()
    paths = library_paths(args.library)
    found = {f"{path.parent.parent.name}/{path.name}": file_digests(path, args.segments) for path in paths}
    for name, entry in found.items():
        if entry["fallback"]:
            print(f"{name}: " + "; ".join(entry["fallback"]))
    if args.save:
        args.save.write_text(json.dumps(found, indent=1, sort_keys=True))
    if args.against is None:
        print(f"{len(found)} files")
        return 0
    before = json.loads(args.against.read_text())
    differ = 0
    for name in sorted(set(before) | set(found)):
        old, new = before.get(name, {}), found.get(name, {})
        for key in ("load_segments", "decode"):
            if old.get(key) != new.get(key):
                differ += 1
                print(f"DIFFERS {name} {key}: {old.get(key)} -> {new.get(key)}")
        old_reads, new_reads = old.get("reader", {}), new.get("reader", {})
        for key in sorted(set(old_reads) | set(new_reads)):
            if old_reads.get(key) != new_reads.get(key):
                differ += 1
                print(f"DIFFERS {name} reader {key}: {old_reads.get(key)} -> {new_reads.get(key)}")
    reads = sum(len(entry.get("reader", {})) for entry in found.values())
    print(f"{len(found)} files ({reads} reader outcomes): {differ} differences")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
