"""Fetch the second, harder dev library: whole game soundtracks from Debian's music-only packages.

The shared library (../shared/data/library) mixes styles, so a track's neighbours are easy to tell apart.
These packages are whole soundtracks by one composer each, where cues sound alike: the case a segment-level
index is for. Only the seven packages below are used; the team keeps other game-music packages back to check
what we build, so never add one here.

    python benchmarks/fetch_devlib.py [--cache ~/.cache/cratedigger/devlib] [--min-kb 300]

Steps, each skipped when its result is already in the cache: `apt-get download` each package into
`<cache>/debs`, `dpkg -x` it into `<cache>/extracted/<package>`, unzip the music of nexuiz's and ufoai's
`.pk3` archives (zip files) beside them, then link every audio file of at least --min-kb (as the shared
library kept files over 300 kB: no jingles or one-shot effects) into `<cache>/library/<package>--<name>` (leaving out files longer than the library accepts),
one flat folder as `bench_neighbours --library` and `bench_reindex --library` read it. Files with the same
content are linked once. Prints the library's files with their sizes; the default test run never needs
any of this.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from core.audio import AUDIO_EXTENSIONS  # noqa: E402

log = logging.getLogger("fetch_devlib")

PACKAGES = ("ufoai-music", "singularity-music", "hyperrogue-music", "nexuiz-music", "planetblupi-music-ogg",
            "drascula-music", "asc-music")
DEFAULT_CACHE = Path.home() / ".cache" / "cratedigger" / "devlib"
DEFAULT_LIBRARY = DEFAULT_CACHE / "library"
"""Where benchmarks look for the dev library when told `--library devlib`."""


def download(package: str, debs: Path) -> Path:
    """The package's .deb in `debs`, fetched with `apt-get download` unless already there."""
    found = sorted(debs.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise RuntimeError(f"apt-get download {package} left no .deb in {debs}")
    return found[-1]


def extract(deb: Path, target: Path) -> None:
    """`dpkg -x` into `target` (into a temporary folder first, so an interrupted run is redone)."""
    if target.is_dir():
        return
    partial = target.with_name(target.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(["dpkg", "-x", str(deb), str(partial)], check=True)
    partial.rename(target)


def unpack_archives(folder: Path) -> None:
    """Unzip the audio members of every .pk3 under `folder` beside it (`<name>.pk3.d/`)."""
    for pk3 in sorted(folder.rglob("*.pk3")):
        out = pk3.with_name(pk3.name + ".d")
        if out.is_dir():
            continue
        partial = out.with_name(out.name + ".part")
        shutil.rmtree(partial, ignore_errors=True)
        with zipfile.ZipFile(pk3) as archive:
            members = [m for m in archive.namelist() if Path(m).suffix.lower() in AUDIO_EXTENSIONS]
            for member in members:
                archive.extract(member, partial)
        partial.rename(out)
        log.info("%s: %d audio files unpacked", pk3.name, len(members))


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def playable_seconds(path: Path) -> float:
    """The file's length as libsndfile reads it (0 when it cannot: such a file is kept, the library decides)."""
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # noqa: BLE001 - any reader failure: let the analysis report it
        return 0.0


def link_library(extracted: Path, library: Path, min_bytes: int, max_seconds: float) -> list[Path]:
    """One flat folder of links `<package>--<file name>` to the audio files of at least `min_bytes` and at
    most `max_seconds` long (longer ones the library refuses: planetblupi's four 20-to-29-minute loops),
    each content once; rebuilt from scratch each run."""
    shutil.rmtree(library, ignore_errors=True)
    library.mkdir(parents=True)
    seen: set[str] = set()
    links = []
    for package in PACKAGES:
        for path in audio_files(extracted / package):
            if path.stat().st_size < min_bytes or playable_seconds(path) > max_seconds:
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            link = library / f"{package}--{path.name}"
            if link.exists():
                link = library / f"{package}--{path.parent.name}-{path.name}"
            link.symlink_to(path)
            links.append(link)
    return links


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--min-kb", type=int, default=300)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if REPO_ROOT in args.cache.resolve().parents:
        print(f"the cache must be outside the repository, not {args.cache}", file=sys.stderr)
        return 2
    debs, extracted = args.cache / "debs", args.cache / "extracted"
    debs.mkdir(parents=True, exist_ok=True)
    extracted.mkdir(parents=True, exist_ok=True)
    for package in PACKAGES:
        deb = download(package, debs)
        extract(deb, extracted / package)
        unpack_archives(extracted / package)
    from core.config import load_settings

    links = link_library(extracted, args.cache / "library", args.min_kb * 1024,
                         load_settings(env_file=None).max_clip_seconds)
    for link in links:
        print(f"{link.resolve().stat().st_size / 2**20:7.2f} MB  {link.name}")
    by_package = {p: sum(link.name.startswith(f"{p}--") for link in links) for p in PACKAGES}
    print(f"{len(links)} audio files in {args.cache / 'library'}: "
          + ", ".join(f"{p} {n}" for p, n in by_package.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
