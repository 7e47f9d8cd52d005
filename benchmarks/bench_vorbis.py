"""The Ogg Vorbis decode through PyAV (core/ogg_vorbis.py) against the libsndfile path it goes before.

1. **Agreement and CPU on real tracks**: every audio file of each --library, `core.audio.load_segments` at
   --segments, once as shipped and once with core.ogg_vorbis turned off (libsndfile, then ffmpeg: the path
   before it), alternating per file so that the machine's load falls on both alike. Printed: files with the
   same segment starts and trim, the worst sample difference among them, the files that differ, and the CPU
   of the two paths (this process, one thread).
2. **Per format** (--formats): one library track's first 120 s re-encoded to WAV, FLAC, MP3 and Opus; CPU a
   second of audio of libsndfile's whole-file read against PyAV's (FFmpeg's demuxer and decoder, frames
   gathered in an AudioFifo). Which formats PyAV would be worth it for.

No target, figures only (models/similarity.md quotes them).

    .venv/bin/python benchmarks/bench_vorbis.py [--library DIR ...] [--segments 24] [--every 1] [--formats]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import audio  # noqa: E402

FORMAT_SECONDS = 120


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = _cpu()
    result = fn()
    return _cpu() - started, result


@contextmanager
def libsndfile_path() -> Iterator[None]:
    """core.audio without core.ogg_vorbis: what it decoded with before."""
    def refuse(path: Path) -> None:
        raise audio._Unreadable("turned off")

    saved = audio._VorbisReader, audio._decode_vorbis
    audio._VorbisReader, audio._decode_vorbis = refuse, lambda path, *, max_seconds: None  # type: ignore
    try:
        yield
    finally:
        audio._VorbisReader, audio._decode_vorbis = saved


def agreement(paths: list[Path], segments: int) -> None:
    same, worst, differ, new_cpu, old_cpu = 0, 0.0, [], 0.0, 0.0
    for path in paths:
        spent, ours = _timed(lambda: audio.load_segments(path, max_seconds=1200, max_segments=segments))
        new_cpu += spent
        with libsndfile_path():
            spent, theirs = _timed(lambda: audio.load_segments(path, max_seconds=1200, max_segments=segments))
        old_cpu += spent
        if (ours.audio.shape != theirs.audio.shape or not np.array_equal(ours.starts, theirs.starts)
                or ours.clip_seconds != theirs.clip_seconds):
            differ.append(f"{path.name}: {len(ours)} segments over {ours.clip_seconds:.3f} s against "
                          f"{len(theirs)} over {theirs.clip_seconds:.3f} s")
            continue
        same += 1
        worst = max(worst, float(np.max(np.abs(ours.audio - theirs.audio))))
    print(f"{len(paths)} files at {segments} segments: {same} with the same starts and trim (worst sample "
          f"difference {worst:.2e}), {len(differ)} differ")
    for line in differ:
        print(f"  differs: {line}")
    print(f"CPU of load_segments: PyAV path {new_cpu:.2f} s, libsndfile path {old_cpu:.2f} s, ratio "
          f"{new_cpu / old_cpu:.2f}")


def formats(source: Path) -> None:
    import av
    import soundfile as sf

    def with_libsndfile(path: Path) -> int:
        return int(sf.read(str(path), dtype="float32", always_2d=True)[0].shape[0])

    def with_pyav(path: Path) -> int:
        with av.open(str(path)) as container:
            fifo = av.AudioFifo()
            for frame in container.decode(container.streams.audio[0]):
                frame.pts = None
                fifo.write(frame)
            return int(fifo.read().samples)

    y, sr = sf.read(str(source), dtype="float32")
    y = y[:sr * FORMAT_SECONDS]
    with tempfile.TemporaryDirectory(prefix="bench-vorbis-") as tmp:
        wav = Path(tmp) / "a.wav"
        sf.write(wav, y, sr)
        sf.write(Path(tmp) / "a.flac", y, sr)
        for suffix, codec in ((".mp3", ["-c:a", "libmp3lame", "-b:a", "192k"]),
                              (".opus", ["-c:a", "libopus", "-b:a", "128k"])):
            subprocess.run([audio.ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(wav), *codec,
                            str(Path(tmp) / f"a{suffix}")], check=True)
        print(f"ms of CPU a second of audio, {FORMAT_SECONDS} s of {source.name} (twice each, interleaved):")
        for suffix in (".wav", ".flac", ".mp3", ".opus"):
            path = Path(tmp) / f"a{suffix}"
            cells = []
            for name, fn in (("libsndfile", with_libsndfile), ("PyAV", with_pyav)) * 2:
                try:
                    spent, _ = _timed(lambda: fn(path))
                    cells.append(f"{name} {1000 * spent / FORMAT_SECONDS:.2f}")
                except Exception as exc:  # a decoder refusing the file is a figure too
                    cells.append(f"{name} failed ({type(exc).__name__})")
            print(f"  {suffix[1:]:<5} " + ", ".join(cells))


def add_library_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--library", type=Path, action="append",
                        help="a folder of audio files; repeat for several (default: ../shared/data/library "
                             "and the Debian dev library when fetched)")


def library_paths(libraries: list[Path] | None) -> list[Path]:
    """The audio files of `libraries`, or of both dev libraries (those present) when none are given."""
    if not libraries:
        from benchmarks.fetch_devlib import DEFAULT_LIBRARY

        libraries = [p for p in (ROOT.parent / "shared" / "data" / "library", DEFAULT_LIBRARY) if p.is_dir()]
    return sorted(p for library in libraries for p in library.iterdir()
                  if p.suffix.lower() in audio.AUDIO_EXTENSIONS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_library_option(parser)
    parser.add_argument("--segments", type=int, default=24)
    parser.add_argument("--every", type=int, default=1, help="take every n-th file")
    parser.add_argument("--formats", action="store_true", help="also the per-format comparison")
    args = parser.parse_args()
    paths = library_paths(args.library)[::args.every]
    if not paths:
        print("no audio files found", file=sys.stderr)
        return 2
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    agreement(paths, args.segments)
    if args.formats:
        formats(next(p for p in paths if p.suffix.lower() == ".ogg"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
