"""Does the landmark fingerprint (core.fingerprint) recognise re-encoded excerpts of a library track, and
does it ever call a different track the same? And what does it cost a track at reindex?

Each library track (../shared/data/library by default, or the Debian soundtracks of
benchmarks/fetch_devlib.py: `--library devlib`) is fingerprinted as the library does it: on the sections
`core.audio.load_segments` decodes for --segments segments. Queries, fingerprinted as /similar does it (the
whole trimmed clip), each cut from the trimmed track and re-encoded with the bundled ffmpeg:
  mid30-mp3        the middle 30 s through a 64 kb/s mp3 (the team's check);
  ex10-mp3         10 s from a random point (seeded per track) through a 64 kb/s mp3;
  ex10-opus-quiet  the same 10 s 12 dB quieter through a 48 kb/s Opus;
  copy-mp3         the whole track through a 64 kb/s mp3;
  copy-opus        the whole track through a 48 kb/s Opus;
  copy-as-track    the mp3 copy fingerprinted as a library track (on its own sections): whether the same
                   song added twice (an upload and a link) could be found at add time.
For each query: whether core.similar's rule recognises its own track (and its landmark count), and whether
the rule calls any other track the same: the query against the library WITHOUT its own track, which must
never happen (both also under the v1 rule, without the density and level-spread conditions, in the same
run: what those two cost and what they prevent); "same soundtrack" is that best among the tracks of the query's own package (the name
before "__" or "--"). Also: how much of each query overlaps the analysed sections (a query that overlaps
none cannot be recognised by a fingerprint of the sections).

Cost: CPU of the fingerprint of a track's sections against the CPU of `core.analysis.analyse` of the same
track (decode, front-end, genre, mood, fingerprint), for the first --time-tracks tracks, in this run.

--matrix: instead, every query shape (mid30, ex10, copy: the whole track) through every encoder setting of
ENCODINGS (mp3 at 64/128/192 kb/s, Opus at 48/96, Vorbis q3, AAC at 128) and the two gain changes
(mp3 64 kb/s 6 dB quieter, Opus 48 kb/s 12 dB quieter): whether a copy made by another encoder than the
one the rule was tuned on is ever called another track. Whole copies of every track in every setting cost
an hour of encoding on this machine, so unless --copies all they are made of the tracks at risk only:
those whose own decoded audio (no encoder) reaches at least RISK_LANDMARKS landmarks at one offset on
another track (an encoder loses landmarks, it does not make two recordings agree), plus --copy-sample
others for the share recognised. --ffmpeg names the encoder binary (default: the bundled one), so the
same queries can be made by another ffmpeg's encoders (e.g. imageio-ffmpeg 0.7's ffmpeg 7.0.2).
--features FILE writes every (query, track) pair the v1 conditions let through, with its evidence
(count, sections, density, level spread), for choosing a rule on one library and checking it on another.

Encoded queries are cached outside the repository (~/.cache/cratedigger/bench-fingerprint/<library>/<ffmpeg
binary name>), so a rerun only fingerprints and matches. Exits 1 when a different track is called the same.

    .venv/bin/python benchmarks/bench_fingerprint.py [--library DIR|devlib] [--segments N]
    .venv/bin/python benchmarks/bench_fingerprint.py --matrix [--ffmpeg PATH] [--features FILE]
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from core import audio, fingerprint, similar  # noqa: E402
from core.constants import SAMPLE_RATE  # noqa: E402

log = logging.getLogger("bench_fingerprint")

DEFAULT_LIBRARY = REPO_ROOT.parent / "shared" / "data" / "library"
DEVLIB = Path.home() / ".cache" / "cratedigger" / "devlib" / "library"
DEFAULT_CACHE = Path.home() / ".cache" / "cratedigger" / "bench-fingerprint"
MAX_TRACK_SECONDS = 900.0
ENCODINGS = {
    # name: (codec, ffmpeg's quality options, file suffix)
    "mp3": ("libmp3lame", ("-b:a", "64k"), "mp3"),
    "mp3-128": ("libmp3lame", ("-b:a", "128k"), "mp3"),
    "mp3-192": ("libmp3lame", ("-b:a", "192k"), "mp3"),
    "opus": ("libopus", ("-b:a", "48k"), "opus"),
    "opus-96": ("libopus", ("-b:a", "96k"), "opus"),
    "vorbis-q3": ("libvorbis", ("-q:a", "3"), "ogg"),
    "aac-128": ("aac", ("-b:a", "128k"), "m4a"),
}
QUERIES = {
    # name: (seconds or None for the whole track, start: "middle" | "random", gain, encoding)
    "mid30-mp3": (30.0, "middle", 1.0, "mp3"),
    "ex10-mp3": (10.0, "random", 1.0, "mp3"),
    "ex10-opus-quiet": (10.0, "random", 10 ** (-12 / 20), "opus"),
    "copy-mp3": (None, "middle", 1.0, "mp3"),
    "copy-opus": (None, "middle", 1.0, "opus"),
}
SHAPES = {"mid30": (30.0, "middle"), "ex10": (10.0, "random"), "copy": (None, "middle")}
GAINS = {"mp3": -6.0, "opus": -12.0}
"""--matrix: the encodings also sent this many dB quieter."""
MATRIX = {
    **{f"{shape}-{enc}": (seconds, where, 1.0, enc) for shape, (seconds, where) in SHAPES.items()
       for enc in ENCODINGS},
    **{f"{shape}-{enc}{db:g}dB": (seconds, where, 10 ** (db / 20), enc)
       for shape, (seconds, where) in SHAPES.items() for enc, db in GAINS.items()},
}
RISK_LANDMARKS = 10
"""--matrix: a track's whole copies are made in every setting when its own decoded audio reaches this many
landmarks (half the rule's count) at one offset on another track."""


def encode(ffmpeg: str, y: np.ndarray, encoding: str, out: Path) -> None:
    """`y` (mono, SAMPLE_RATE) through `ffmpeg`'s encoder setting `encoding` (ENCODINGS), into `out`."""
    codec, options, _ = ENCODINGS[encoding]
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(SAMPLE_RATE),
           "-ac", "1", "-i", "pipe:0", "-codec:a", codec, *options, str(out)]
    subprocess.run(cmd, input=np.ascontiguousarray(y, dtype="<f4").tobytes(), check=True, timeout=600)


def window(n_samples: int, seconds: float | None, where: str, seed: str) -> tuple[int, int]:
    """(start, stop) samples of a query within a trimmed track of `n_samples`."""
    length = n_samples if seconds is None else min(n_samples, int(seconds * SAMPLE_RATE))
    if where == "middle":
        start = (n_samples - length) // 2
    else:
        rng = np.random.default_rng(int(hashlib.sha1(seed.encode()).hexdigest()[:8], 16))
        start = int(rng.integers(0, n_samples - length + 1))
    return start, start + length


@dataclass
class Track:
    name: str
    package: str
    landmarks: np.ndarray
    spans: list[tuple[float, float]]
    """The analysed sections, in seconds of the trimmed track."""
    seconds: float
    """The trimmed track's length, as the library stores it."""
    fingerprint_cpu: float
    queries: dict[str, tuple[np.ndarray, tuple[float, float]]] = field(default_factory=dict)
    """kind -> (landmarks, (start, stop) seconds in the trimmed track)."""


def package_of(name: str) -> str:
    return name.split("--")[0] if "--" in name else name.split("__")[0]


def load_track(path: Path, segments: int) -> tuple[Track, np.ndarray]:
    """The track as the library fingerprints it, and its trimmed audio (the queries are cut from it)."""
    sections = audio.load_segments(path, max_seconds=MAX_TRACK_SECONDS, max_segments=segments)
    started = time.process_time()
    landmarks = fingerprint.fingerprint_sections(sections.audio, sections.starts)
    cpu = time.process_time() - started
    trimmed = audio.trim_silence(audio.decode(path, max_seconds=MAX_TRACK_SECONDS), name=path.name)
    spans = [(float(s), float(s) + 3.0) for s in sections.starts]
    return Track(path.name, package_of(path.name), landmarks, spans, sections.clip_seconds, cpu), trimmed


def add_queries(track: Track, path: Path, trimmed: np.ndarray, kinds: dict[str, tuple], cache: Path,
                ffmpeg: str, segments: int) -> None:
    """Cut, encode (cached), decode and fingerprint the track's queries of `kinds` (QUERIES' shape); the
    whole mp3 copy is also fingerprinted as a library track would be (copy-as-track)."""
    key = hashlib.sha1(f"{path.name}|{path.stat().st_size}".encode()).hexdigest()[:10]
    for kind, (seconds, where, gain, encoding) in kinds.items():
        a, b = window(trimmed.size, seconds, where, f"{path.name}|{seconds}")
        file = cache / f"{key}-{kind}.{ENCODINGS[encoding][2]}"
        if not file.is_file():
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                part = Path(tmp) / file.name
                encode(ffmpeg, trimmed[a:b] * gain, encoding, part)
                part.replace(file)
        y = audio.trim_silence(audio.decode(file, max_seconds=MAX_TRACK_SECONDS), name=file.name)
        track.queries[kind] = (fingerprint.fingerprint(y), (a / SAMPLE_RATE, b / SAMPLE_RATE))
        if kind == "copy-mp3":
            copy = audio.load_segments(file, max_seconds=MAX_TRACK_SECONDS, max_segments=segments)
            track.queries["copy-as-track"] = (fingerprint.fingerprint_sections(copy.audio, copy.starts),
                                              (a / SAMPLE_RATE, b / SAMPLE_RATE))


def at_risk(queried: list[Track], tracks: list[Track], originals: dict[str, np.ndarray]) -> set[str]:
    """The `queried` tracks whose decoded audio's landmarks (`originals`, no encoder) reach RISK_LANDMARKS
    at one offset on another of `tracks`."""
    return {t.name for t in queried
            if any(fingerprint.match(originals[t.name], o.landmarks).count >= RISK_LANDMARKS
                   for o in tracks if o is not t)}


def overlap(spans: list[tuple[float, float]], window_: tuple[float, float]) -> float:
    """Seconds of the query's window that lie in the analysed sections."""
    return sum(max(0.0, min(b, window_[1]) - max(a, window_[0])) for a, b in spans)


def analysis_cpu(paths: list[Path], segments: int) -> list[float]:
    """CPU seconds of the library's whole analysis of each track (fingerprint included), one thread."""
    from core.analysis import Limits, analyse
    from core.config import load_settings

    limits = Limits(load_settings().models_dir, MAX_TRACK_SECONDS, segments)
    analyse(paths[0], limits, fingerprint=True)  # loads the models
    out = []
    for p in paths:
        started = time.process_time()
        analyse(p, limits, fingerprint=True)
        out.append(time.process_time() - started)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", default=str(DEFAULT_LIBRARY),
                        help="a folder of audio files, or 'devlib'")
    parser.add_argument("--segments", type=int, default=None,
                        help="sections a library track is analysed on "
                             "(default: CRATEDIGGER_LIBRARY_SEGMENTS)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--time-tracks", type=int, default=20,
                        help="tracks whose whole analysis is timed against their fingerprint (0: none)")
    parser.add_argument("--ffmpeg", default=None, help="the ffmpeg binary that encodes the queries "
                        "(default: the bundled one)")
    parser.add_argument("--matrix", action="store_true",
                        help="every query shape through every encoder setting (ENCODINGS, GAINS)")
    parser.add_argument("--copies", choices=("risky", "all", "none"), default="risky",
                        help="--matrix: whole copies of the tracks at risk (and --copy-sample others), of "
                             "every track, or of none")
    parser.add_argument("--copy-sample", type=int, default=20,
                        help="--matrix: whole copies of this many tracks not at risk (the first ones)")
    parser.add_argument("--queries-of", type=int, default=None,
                        help="make queries of the first N tracks only (every track stays in the library, "
                             "so every query still meets all of them)")
    parser.add_argument("--features", type=Path, default=None,
                        help="write every (query, track) pair v1's conditions let through, as TSV")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.segments is None:
        from core.config import load_settings

        args.segments = load_settings().library_segments
    library = DEVLIB if args.library == "devlib" else Path(args.library).expanduser()
    if not library.is_dir():
        print(f"no library at {library} (the shared data, or benchmarks/fetch_devlib.py for devlib)")
        return 2
    ffmpeg = args.ffmpeg or audio.ffmpeg_exe()
    cache = args.cache / hashlib.sha1(str(library.resolve()).encode()).hexdigest()[:8] / Path(ffmpeg).name
    cache.mkdir(parents=True, exist_ok=True)
    paths = sorted(p for p in library.iterdir() if p.suffix.lower() in audio.AUDIO_EXTENSIONS)
    kinds = MATRIX if args.matrix else QUERIES
    excerpts = {k: v for k, v in kinds.items() if not args.matrix or v[0] is not None}
    copies = {k: v for k, v in kinds.items() if k not in excerpts and args.copies != "none"}
    asked = {p.name for p in paths[:args.queries_of]}
    originals: dict[str, np.ndarray] = {}

    def load(path: Path) -> Track:
        track, trimmed = load_track(path, args.segments)
        if path.name not in asked:
            return track
        add_queries(track, path, trimmed, excerpts, cache, ffmpeg, args.segments)
        if copies:
            originals[track.name] = fingerprint.fingerprint(trimmed)
        return track

    with ThreadPoolExecutor(2) as pool:  # the encoders run as processes meanwhile
        tracks = list(pool.map(load, paths))
        if copies:
            risky = at_risk([t for t in tracks if t.name in asked], tracks, originals)
            sample = {t.name for t in tracks if t.name in asked and t.name not in risky}
            sample = set(sorted(sample)[:args.copy_sample]) if args.copies == "risky" else sample
            log.info("whole copies of %d tracks at risk and %d others", len(risky), len(sample))
            chosen = [(t, p) for t, p in zip(tracks, paths) if t.name in risky | sample]

            def copy(track_path: tuple[Track, Path]) -> None:
                track, path = track_path
                y = audio.decode(path, max_seconds=MAX_TRACK_SECONDS)
                add_queries(track, path, audio.trim_silence(y, name=path.name), copies, cache, ffmpeg,
                            args.segments)

            list(pool.map(copy, chosen))
    print(f"queries encoded by {ffmpeg}")
    false_calls = report(tracks, [*kinds, "copy-as-track"], args.features, str(args.library))
    cpu = np.array([t.fingerprint_cpu for t in tracks]) * 1000
    sizes = np.array([t.landmarks.shape[0] for t in tracks])
    print(f"\nfingerprint of a track's sections ({args.segments} segments): CPU {cpu.mean():.1f} ms a track "
          f"(median {np.median(cpu):.1f}, max {cpu.max():.1f}); {sizes.mean():.0f} landmarks "
          f"({sizes.mean() * 8 / 1024:.0f} KiB stored) a track")
    if args.time_tracks:
        whole = np.array(analysis_cpu(paths[:args.time_tracks], args.segments)) * 1000
        part = cpu[:args.time_tracks]
        print(f"whole analysis of the first {len(whole)} tracks: CPU {whole.mean():.0f} ms a track, of which "
              f"the fingerprint {part.mean():.1f} ms ({part.sum() / whole.sum():.1%})")
    return 1 if false_calls else 0


def recognised_as(q: np.ndarray, track: Track) -> bool:
    """core.similar's rule, as /similar applies it to a stored track."""
    starts = np.array([a for a, _ in track.spans])
    return similar.same_by_fingerprint(q, track.landmarks, starts, track.seconds) is not None


Found = tuple[fingerprint.FingerprintMatch, fingerprint.Evidence]


def v1_evidence(q: np.ndarray, track: Track) -> Found | None:
    """The match and its evidence when the v1 rule calls the query this track's (the landmark count, the
    sections and the query within the track: core.similar.same_by_fingerprint's first three conditions,
    without the density and the level spread), else None."""
    found = fingerprint.match(q, track.landmarks)
    if found.count < similar.SAME_LANDMARKS:
        return None
    if not fingerprint.within(q, found, track.seconds, slack=similar.SAME_SLACK_SECONDS):
        return None
    seen = fingerprint.evidence(q, track.landmarks, found, np.array([a for a, _ in track.spans]))
    return (found, seen) if 0 < seen.agreeing >= similar.SAME_AGREEMENT * seen.covered else None


def report(tracks: list[Track], kinds: list[str], features: Path | None, library: str) -> int:
    """Per query kind: recognised by the shipped rule (and by the landmark count alone), the own and other
    tracks' counts, false calls (also within one soundtrack); returns the number of false calls. With
    `features`, every pair v1 lets through is written there with its evidence."""
    rows: list[tuple] = []

    def v1(kind: str, t: Track, q: np.ndarray, o: Track) -> bool:
        got = v1_evidence(q, o)
        if got is not None:
            found, seen = got
            rows.append((library, kind, t.name, o.name, int(o is t), found.count, seen.covered, seen.agreeing,
                         round(seen.density, 5), seen.level_spread))
        return got is not None

    false_calls = 0
    wrong: list[tuple[str, str, str, int]] = []
    print(f"\n{len(tracks)} tracks; the same recording: at least {similar.SAME_LANDMARKS} landmarks at one "
          f"offset that agree on at least {similar.SAME_AGREEMENT:.0%} of the sections the query covers, "
          f"the query within the track (+-{similar.SAME_SLACK_SECONDS:g} s)")
    print(f"... and at least {similar.SAME_DENSITY:.1%} of the track's landmarks there agree "
          f"({similar.SAME_LONG_DENSITY:.1%} when the query covers {similar.SAME_LONG_SECTIONS} sections or "
          f"more), their levels within {similar.SAME_LEVEL_SPREAD:g} dB (v1: without these)")
    print(f"{'query':<16} {'recognised':>10} {'by count':>8} {'overlap 0':>9} {'own p10/p50':>12} "
          f"{'others max':>10} {'same pkg':>8} {'count>=':>7} {'false':>5} {'offset ok':>9} {'v1 rec.':>7} "
          f"{'v1 false':>8}")
    for kind in kinds:
        own, best_other, best_pkg, overlaps = [], [], [], []
        hits = offsets_ok = by_count = false_here = others_passing = v1_hits = v1_false = 0
        having = [t for t in tracks if kind in t.queries]
        if not having:
            continue
        for t in having:
            q, (a, b) = t.queries[kind]
            m = fingerprint.match(q, t.landmarks)
            own.append(m.count)
            by_count += int(m.count >= similar.SAME_LANDMARKS)
            v1_hits += int(v1(kind, t, q, t))
            if recognised_as(q, t):
                hits += 1
                offsets_ok += int(abs(m.offset - a) <= 0.1)
            overlaps.append(overlap(t.spans, (a, b)))
            counts = [(fingerprint.match(q, o.landmarks).count, o) for o in tracks if o is not t]
            best_other.append(max((c for c, _ in counts), default=0))
            best_pkg.append(max((c for c, o in counts if o.package == t.package), default=0))
            passing = [(c, o) for c, o in counts if c >= similar.SAME_LANDMARKS]
            others_passing += int(bool(passing))
            called = [(c, o.name) for c, o in passing if recognised_as(q, o)]
            v1_false += int(any([v1(kind, t, q, o) for _, o in passing]))
            wrong.extend((kind, t.name, name, c) for c, name in called)
            false_here += int(bool(called))
        false_calls += false_here
        own_a = np.array(own)
        print(f"{kind:<16} {hits:>4} of {len(having):<3} {by_count:>8} {sum(o == 0 for o in overlaps):>9} "
              f"{int(np.percentile(own_a, 10)):>5}/{int(np.median(own_a)):<6} {max(best_other):>10} "
              f"{max(best_pkg):>8} {others_passing:>7} {false_here:>5} {offsets_ok:>9} {v1_hits:>7} "
              f"{v1_false:>8}")
        missed = [(t.name, c, round(o, 1)) for t, c, o in zip(having, own, overlaps)
                  if not recognised_as(t.queries[kind][0], t)]
        if missed:
            print(f"  missed (name, landmarks, seconds overlapping the sections): {missed[:12]}"
                  f"{' ...' if len(missed) > 12 else ''}")
    print("\ncolumns: recognised by the rule; by count: own track reaching the landmark count alone; "
          "overlap 0: queries overlapping no analysed section; own p10/p50: own track's landmark count; "
          "others max / same pkg: the best count of another track (of any package / of the query's own); "
          "count>=: queries that some other track reaches the count on; false: queries the rule calls "
          "another track's; offset ok: recognised at the excerpt's true place (a loop can put it elsewhere); "
          "v1 rec. / v1 false: the same under the v1 rule")
    for row in sorted(wrong, key=lambda w: -w[3]):
        print("  called the same (query, its track, the other track, landmarks):", *row)
    if features is not None:
        with features.open("w", newline="") as f:
            out = csv.writer(f, delimiter="\t")
            out.writerow(("library", "kind", "query", "track", "own", "count", "covered", "agreeing",
                          "density", "level_spread"))
            out.writerows(rows)
    return false_calls


if __name__ == "__main__":
    sys.exit(main())
