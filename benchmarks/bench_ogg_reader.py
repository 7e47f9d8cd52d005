"""The reading of this tree (core/ogg_vorbis.py and core/audio.py) against another git revision's, side by
side in one run.

Every audio file of each --library is loaded as a library track is (`load_segments` at --segments) once
with each revision's two modules, the order alternating from file to file so that the machine's load falls
on both alike. Printed per revision: CPU a track (this process, one thread; time.process_time, system time
included) of opening Ogg files (`OggVorbis.__init__`: reading the file, its pages, the Vorbis headers), of
their reads (`OggVorbis.read`: building packets, decoding, gathering) and of the whole `load_segments`;
and the files whose segments differ between the two, with the largest sample difference. No target,
figures only.

    .venv/bin/python benchmarks/bench_ogg_reader.py [--ref main] [--library DIR ...] [--segments 16]
        [--repeat 1]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import audio, ogg_vorbis  # noqa: E402

PARTS = ("open", "reads", "load_segments")


def _module(name: str, source: bytes, origin: str) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, origin, "exec"), module.__dict__)
    return module


def revision(ref: str) -> types.ModuleType:
    """core/audio.py at git revision `ref`, reading Ogg files with that revision's core/ogg_vorbis.py."""
    def show(path: str) -> bytes:
        return subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:{path}"], capture_output=True,
                              check=True).stdout

    reader = _module(f"ogg_vorbis_at_{ref}", show("core/ogg_vorbis.py"), f"{ref}:core/ogg_vorbis.py")
    sys.modules["core.ogg_vorbis"] = reader  # what that audio.py imports its reader from
    try:
        return _module(f"audio_at_{ref}", show("core/audio.py"), f"{ref}:core/audio.py")
    finally:
        sys.modules["core.ogg_vorbis"] = ogg_vorbis


def _timed(spent: dict[str, float], part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[part] += time.process_time() - started
    return timed


class Reading:
    """One revision's core.audio, with the CPU of its OggVorbis opens and reads counted."""

    def __init__(self, name: str, module: types.ModuleType) -> None:
        self.name, self.module = name, module
        self.spent = dict.fromkeys(PARTS, 0.0)
        cls = module.OggVorbis
        module.OggVorbis = type(cls.__name__, (cls,), {"__init__": _timed(self.spent, "open", cls.__init__),
                                                       "read": _timed(self.spent, "reads", cls.read)})

    def load(self, path: Path, segments: int) -> audio.Segments:
        started = time.process_time()
        try:
            return self.module.load_segments(path, max_seconds=1200, max_segments=segments)
        finally:
            self.spent["load_segments"] += time.process_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main", help="the git revision to compare with (default main)")
    parser.add_argument("--library", type=Path, action="append",
                        help="a folder of audio files; repeat for several (default: the Debian dev library)")
    parser.add_argument("--segments", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if not args.library:
        from benchmarks.fetch_devlib import DEFAULT_LIBRARY

        args.library = [DEFAULT_LIBRARY]
    paths = sorted(p for library in args.library for p in library.iterdir()
                   if p.suffix.lower() in audio.AUDIO_EXTENSIONS)
    if not paths:
        print("no audio files found", file=sys.stderr)
        return 2
    readers = [Reading(args.ref, revision(args.ref)), Reading("this tree", audio)]
    for reader in readers:  # imports, first compilations: not a track's cost
        reader.load(paths[0], args.segments)
        reader.spent.update(dict.fromkeys(PARTS, 0.0))
    load = os.getloadavg()[0]
    differ: dict[str, str] = {}
    for _ in range(args.repeat):
        for i, path in enumerate(paths):
            order = readers if i % 2 else readers[::-1]
            first, second = (reader.load(path, args.segments) for reader in order)
            if not (np.array_equal(first.audio, second.audio) and np.array_equal(first.starts, second.starts)
                    and first.clip_seconds == second.clip_seconds):
                same_places = (np.array_equal(first.starts, second.starts)
                               and first.clip_seconds == second.clip_seconds)
                differ[path.name] = (f"same starts and trim, samples within "
                                     f"{float(np.max(np.abs(first.audio - second.audio))):.1e}"
                                     if same_places else "other starts or trim")
    tracks = len(paths) * args.repeat
    print(f"{len(paths)} files x {args.repeat}, {args.segments} segments; load average "
          f"{load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("ms of CPU a track: " + ", ".join(PARTS))
    for reader in readers:
        cells = "  ".join(f"{reader.spent[part] / tracks * 1000:7.1f}" for part in PARTS)
        print(f"  {reader.name:<10} {cells}")
    ratio = readers[1].spent["load_segments"] / readers[0].spent["load_segments"]
    print(f"load_segments, this tree / {args.ref}: {ratio:.3f}")
    print(f"segments bit for bit the same: {len(paths) - len(differ)} of {len(paths)} files")
    for name, how in sorted(differ.items()):
        print(f"  differ: {name}: {how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
