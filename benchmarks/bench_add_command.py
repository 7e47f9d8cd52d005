"""The wall time of `cratedigger library add FOLDER` as a user runs it: the whole command, from the shell
to its exit (imports, the service and its workers starting, registration, analysis, the index, shutting
down), on a fresh data folder each run. This is how the team times adding its held-back library; the
reindex benchmark (`bench_reindex.py`) times the analysis inside one service only.

`--trees A B ...` runs each checkout's own code in turn, run after run, so that a comparison taken on a
shared machine sees the same load; the median of each and their ratio are printed. `--plain` hides PyAV
(as a plain install has it) through a folder that shadows the `av` package. Figures depend on the load:
the 1-minute load average is printed with every run. Exits 1 when the best median misses 10 tracks/s.

    .venv/bin/python benchmarks/bench_add_command.py [--library DIR|devlib] [--runs 3] [--segments 16]
        [--trees /work/main .] [--plain]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_LIBRARY = ROOT.parent / "shared" / "data" / "library"
DEVLIB = Path.home() / ".cache" / "cratedigger" / "devlib" / "library"
TARGET_TRACKS_PER_SECOND = 10.0


def no_pyav(folder: Path) -> Path:
    """A folder that, first on the path, makes `import av` fail as it does where PyAV is not installed."""
    (folder / "av").mkdir(parents=True, exist_ok=True)
    (folder / "av" / "__init__.py").write_text("raise ImportError('PyAV hidden by bench_add_command')\n")
    return folder


def one_add(tree: Path, library: Path, segments: int, hide: Path | None) -> tuple[float, int]:
    """(wall seconds, tracks added) of one `library add` of `library` with `tree`'s code."""
    with tempfile.TemporaryDirectory(prefix="bench-add-") as data:
        path = [str(tree)] if hide is None else [str(hide), str(tree)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "CRATEDIGGER_DATA_DIR": data,
               "CRATEDIGGER_LIBRARY_SEGMENTS": str(segments)}
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "core", "library", "add", str(library), "--json"],
                              cwd=tree, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"library add failed with {tree}: {done.stderr.strip().splitlines()[-1:]}")
    return wall, len(json.loads(done.stdout.splitlines()[-1])["added"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", default=str(SHARED_LIBRARY), help="a folder of audio files, or 'devlib'")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--segments", type=int, default=16)
    parser.add_argument("--trees", nargs="+", type=Path, default=[ROOT], help="checkouts to time in turn")
    parser.add_argument("--plain", action="store_true", help="hide PyAV, as a plain install has it")
    args = parser.parse_args()
    library = DEVLIB if args.library == "devlib" else Path(args.library).expanduser()
    if not library.is_dir():
        print(f"no library at {library} (the shared data, or benchmarks/fetch_devlib.py for devlib)")
        return 2
    walls: dict[Path, list[float]] = {tree: [] for tree in args.trees}
    added = 0
    with tempfile.TemporaryDirectory(prefix="bench-add-noav-") as hidden:
        hide = no_pyav(Path(hidden)) if args.plain else None
        for run in range(args.runs):
            for tree in args.trees:
                wall, added = one_add(tree.resolve(), library, args.segments, hide)
                walls[tree].append(wall)
                print(f"run {run + 1} {tree}: {added} tracks in {wall:.2f} s = {added / wall:.2f} tracks/s "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
    medians = {tree: statistics.median(w) for tree, w in walls.items()}
    for tree, median in medians.items():
        print(f"{tree}: median {median:.2f} s ({', '.join(f'{w:.2f}' for w in walls[tree])})")
    if len(args.trees) > 1:
        first = args.trees[0]
        for tree in args.trees[1:]:
            print(f"{tree} / {first}: {medians[tree] / medians[first]:.3f} of the wall time")
    best = added / min(medians.values())
    met = best >= TARGET_TRACKS_PER_SECOND
    print(f"target {TARGET_TRACKS_PER_SECOND:g} tracks/s: {'met' if met else 'missed'} ({best:.2f} at best)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
