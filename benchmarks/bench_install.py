"""The size and first-install time of a fresh, non-editable install (issue 21: the runtime under 600 MB).

Creates a virtual environment in a temporary folder, installs the project into it with pip, without pip's
cache (`--no-cache-dir`: every wheel is fetched and unpacked as a new user's would be), and prints the
seconds pip took, the environment's size and its largest installed distributions (a distribution's
modules, .libs and dist-info together, from its RECORD), and which of the extras' heavy modules it holds.

    .venv/bin/python benchmarks/bench_install.py [--extras descriptors] [--source DIR] [--keep DIR]

`--source` defaults to this repository; point it at a clean export (`git archive`) to leave out build
folders. The time is pip's download and unpacking, so it depends on the network and the machine's load:
say what `uptime` showed when quoting it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("librosa", "numba", "llvmlite", "scipy", "sklearn", "tensorflow", "keras", "ai_edge_litert")
"""Modules that only an extra should bring."""

SIZES = """
import json, os
from importlib import metadata
from pathlib import Path
sizes = {}
for dist in metadata.distributions():
    total = 0
    for f in dist.files or ():
        path = Path(dist.locate_file(f))
        if path.is_file():
            total += path.stat().st_size
    sizes[dist.metadata["Name"]] = total
print(json.dumps(sizes))
"""
"""Run inside the new environment: bytes per installed distribution, from each one's RECORD."""


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT, help="the project folder to install")
    parser.add_argument("--extras", default="", help="comma-separated extras (default: the runtime only)")
    parser.add_argument("--keep", type=Path, default=None, help="build the environment here and keep it")
    parser.add_argument("--top", type=int, default=15, help="how many distributions to list")
    args = parser.parse_args()

    target = args.keep or Path(tempfile.mkdtemp(prefix="cratedigger-install-")) / "venv"
    if target.exists():
        shutil.rmtree(target)
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / ("Scripts" if os.name == "nt" else "bin") / "python"
    what = f"{args.source}[{args.extras}]" if args.extras else str(args.source)
    started = time.perf_counter()
    subprocess.run([str(python), "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
                    "--quiet", what], check=True)
    seconds = time.perf_counter() - started

    sizes = json.loads(subprocess.run([str(python), "-c", SIZES], check=True, capture_output=True,
                                      text=True).stdout)
    probe = f"import importlib.util as u; print([n for n in {HEAVY!r} if u.find_spec(n)])"
    present = subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True).stdout
    print(f"# {what}, non-editable, pip --no-cache-dir; load before and after: see uptime")
    print(f"install seconds: {seconds:.0f}")
    print(f"environment: {folder_bytes(target) / 1e6:.0f} MB ({folder_bytes(target) / 2**20:.0f} MiB)")
    print(f"extras' heavy modules importable: {present.strip()}")
    print("largest distributions (MB):")
    for name, size in sorted(sizes.items(), key=lambda item: -item[1])[:args.top]:
        print(f"  {name:<24} {size / 1e6:7.1f}")
    if args.keep is None:
        shutil.rmtree(target.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
