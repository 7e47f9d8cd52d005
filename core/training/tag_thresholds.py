"""Choose which of the front-end's 50 MSD tags `/genre` may show, and from what score, on labelled audio.

A tag is shown only where we can check it and it is right most of the time it is shown. The evidence:
- mood4q-dev (588 commercial songs): AllMusic's genres (Pop/Rock, Jazz, Blues, Country, Rap, Electronic, R&B,
  Folk, ...) and the set's quadrant plus AllMusic's mood words (sad, happy, calm);
- gtzan-audio (train and valid tracks of the artist-filtered split): GTZAN's ten genres.
`EVIDENCE` says, per tag, which labels make a clip a positive or a negative; a clip with neither is not
counted. A tag with no entry there is never shown (decades, voices, instruments: nothing here labels them).

A clip's tag score is the mean of its segments' tag probabilities, as the runtime computes it
(core.tags.clear_tags). Per tag, the threshold is the lowest score at which the tag's precision on the
*selection* half reaches TARGET_PRECISION, and its Wilson lower bound LOWER_BOUND, with at least MIN_SHOWN
clips shown; tags that never get there are dropped. The other half (*check*: mood4q artists hashed to the other side, GTZAN's valid split) is never
looked at while choosing a threshold, and gives the precision the model card reports; it vetoes a tag it
finds wrong more often than right (CHECK_VETO). GTZAN's test split is not used.

    python -m core.training.tag_thresholds [--shared ../shared/data] [--out models/tags.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import zlib
from pathlib import Path

import numpy as np

from core.frontend import TAGS

log = logging.getLogger(__name__)

TARGET_PRECISION = 0.8
MIN_SHOWN = 8
"""A threshold must show the tag on at least this many selection clips: precision on fewer is luck."""
LOWER_BOUND = 0.7
"""...and the one-sided 95 % Wilson lower bound of that precision must reach this: the lowest threshold
whose precision just touches the target is the one most flattered by chance (a first run with the target
alone fell from 0.81 to 0.44 on the check half for hip-hop)."""
Z = 1.645
CHECK_VETO = 0.5
"""A tag the check half shows wrong more often than right (or shows on fewer than CHECK_MIN clips) is not
shipped: "right most of the time" is the promise. This veto is the only use of the check half; it removed
hip-hop (0.81 on selection, 0.44 on check), and the check figures of every shipped tag stay untuned."""
CHECK_MIN = 5

SAD_WORDS = {"Sad", "Gloomy", "Melancholy", "Somber", "Bleak", "Weary", "Anguished", "Distraught", "Brooding",
             "Bittersweet", "Wistful"}
HAPPY_WORDS = {"Happy", "Joyous", "Cheerful", "Fun", "Playful", "Carefree", "Positive", "Lively", "Exuberant",
               "Party/Celebratory", "Rollicking"}
CALM_WORDS = {"Calm", "Peaceful", "Soothing", "Mellow", "Relaxed", "Laid-Back", "Gentle", "Soft", "Quiet",
              "Smooth", "Dreamy", "Delicate"}


def _genre(pos_allmusic: set[str], pos_gtzan: set[str]) -> tuple[set[str], set[str]]:
    """Positives by AllMusic genre or GTZAN genre; every other clip of either set is a negative."""
    return ({f"allmusic:{g}" for g in pos_allmusic} | {f"gtzan:{g}" for g in pos_gtzan},
            {"allmusic:*", "gtzan:*"})


EVIDENCE: dict[str, tuple[set[str], set[str]]] = {
    "rock": _genre({"Pop/Rock"}, {"rock", "metal"}),
    "pop": _genre({"Pop/Rock"}, {"pop", "disco"}),
    "jazz": _genre({"Jazz"}, {"jazz"}),
    "blues": _genre({"Blues"}, {"blues"}),
    "country": _genre({"Country"}, {"country"}),
    "Hip-Hop": _genre({"Rap"}, {"hiphop"}),
    "metal": ({"gtzan:metal"}, {"gtzan:*", "allmusic-not:Pop/Rock"}),
    "heavy metal": ({"gtzan:metal"}, {"gtzan:*", "allmusic-not:Pop/Rock"}),
    "hard rock": ({"gtzan:metal", "gtzan:rock"}, {"gtzan:*", "allmusic-not:Pop/Rock"}),
    "electronic": ({"allmusic:Electronic"}, {"allmusic:*", "gtzan:blues", "gtzan:classical", "gtzan:country",
                                             "gtzan:jazz", "gtzan:metal", "gtzan:rock"}),
    "soul": _genre({"R&B"}, set()),
    "rnb": _genre({"R&B"}, set()),
    "folk": _genre({"Folk"}, set()),
    "easy listening": _genre({"Easy Listening"}, set()),
    "dance": ({"gtzan:disco"}, {"gtzan:*"}),
    "instrumental": ({"gtzan:classical"}, {"gtzan:pop", "gtzan:hiphop", "gtzan:country", "gtzan:metal",
                                           "gtzan:reggae", "gtzan:rock", "gtzan:disco"}),
    "sad": ({"mood:sad"}, {"mood:not-sad"}),
    "happy": ({"mood:happy"}, {"mood:not-happy"}),
    "Mellow": ({"mood:calm"}, {"mood:not-calm"}),
    "chill": ({"mood:calm"}, {"mood:not-calm"}),
    "chillout": ({"mood:calm"}, {"mood:not-calm"}),
}
"""Tag -> (labels that make a clip a positive, labels that make it a negative if it is no positive).
`allmusic:*` / `gtzan:*` mean any clip of that set; `allmusic-not:G` a mood4q song without genre G."""


def mood4q_labels(row: dict[str, str]) -> set[str]:
    """A mood4q song's labels: its AllMusic genres, and sad/happy/calm from its quadrant and mood words
    (the quadrant decides where the words are silent; a quadrant that says neither leaves it unknown)."""
    genres = {g.strip() for g in row["genres"].split(";") if g.strip()}
    words = {w.strip() for w in row["moods"].split(";")}
    labels = {f"allmusic:{g}" for g in genres} | {"allmusic:*"}
    labels |= {f"allmusic-not:{g}" for g in ("Pop/Rock",) if g not in genres}
    q = row["quadrant"]
    for mood, vocabulary, yes, no in (("sad", SAD_WORDS, "Q3", {"Q1", "Q2"}),
                                      ("happy", HAPPY_WORDS, "Q1", {"Q2", "Q3"}),
                                      ("calm", CALM_WORDS, "Q4", {"Q1", "Q2"})):
        if words & vocabulary or q == yes:
            labels.add(f"mood:{mood}")
        elif q in no:
            labels.add(f"mood:not-{mood}")
    return labels


def half_of(group: str) -> str:
    """A stable half for a group (an artist): the same artist is never on both sides."""
    return "selection" if zlib.crc32(group.encode()) % 2 == 0 else "check"


def verdicts(labels: list[frozenset[str]], tag: str) -> np.ndarray:
    """Per clip: 1 positive, 0 negative, -1 unknown for `tag`."""
    positive, negative = EVIDENCE[tag]
    out = np.full(len(labels), -1, np.int8)
    for i, ls in enumerate(labels):
        if ls & positive:
            out[i] = 1
        elif ls & negative:
            out[i] = 0
    return out


def wilson_lower(right: np.ndarray, shown: np.ndarray, z: float = Z) -> np.ndarray:
    """Lower Wilson score bound of a proportion right/shown."""
    p = right / shown
    centre = p + z * z / (2 * shown)
    spread = z * np.sqrt(p * (1 - p) / shown + z * z / (4 * shown * shown))
    return (centre - spread) / (1 + z * z / shown)


def choose_threshold(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """The lowest score at which the clips scoring at least it are TARGET_PRECISION right (and LOWER_BOUND
    by the Wilson bound), with at least MIN_SHOWN of them; None when no score gets there."""
    known = truth >= 0
    s, t = scores[known], truth[known]
    order = np.argsort(-s)
    s, t = s[order], t[order]
    shown = np.arange(1, len(s) + 1)
    right = np.cumsum(t)
    precision = right / shown
    ok = (precision >= TARGET_PRECISION) & (wilson_lower(right, shown) >= LOWER_BOUND) & (shown >= MIN_SHOWN)
    # Only cut between distinct scores, so that "shown" is what a threshold really shows.
    ok &= np.append(s[1:] < s[:-1], True)
    if not ok.any():
        return None
    return float(s[np.flatnonzero(ok)[-1]])


def precision_at(scores: np.ndarray, truth: np.ndarray, threshold: float) -> tuple[float | None, int]:
    known = truth >= 0
    shown = known & (scores >= threshold)
    return (float(truth[shown].mean()) if shown.any() else None), int(shown.sum())


def fit(scores: np.ndarray, labels: list[frozenset[str]], halves: np.ndarray) -> dict[str, dict]:
    """Per tag with evidence: threshold (on selection), precision and clips shown on both halves."""
    table: dict[str, dict] = {}
    selection = halves == "selection"
    for tag in EVIDENCE:
        column = scores[:, TAGS.index(tag)]
        truth = verdicts(labels, tag)
        threshold = choose_threshold(column[selection], truth[selection])
        entry: dict = {"positives": int((truth == 1).sum()), "negatives": int((truth == 0).sum())}
        if threshold is not None:
            for half, mask in (("selection", selection), ("check", ~selection)):
                p, n = precision_at(column[mask], truth[mask], threshold)
                entry[half] = {"precision": None if p is None else round(p, 3), "shown": n}
            entry["threshold"] = round(threshold, 4)
        table[tag] = entry
    return table


def load_clips(shared: Path) -> tuple[list, list[frozenset[str]], np.ndarray]:
    from core.training.genre_data import Clip, gtzan_clips

    clips, labels, halves = [], [], []
    with open(shared / "mood4q-dev" / "tracks.csv", newline="") as f:
        for row in csv.DictReader(f):
            clips.append(Clip(f"mood4q:{row['artist']}", "pop", "mood4q", "full30",
                              shared / "mood4q-dev" / row["file"]))
            labels.append(frozenset(mood4q_labels(row)))
            halves.append(half_of(row["artist"]))
    for clip in gtzan_clips(shared / "gtzan-audio", shared / "gtzan-split"):
        clips.append(clip)
        labels.append(frozenset({f"gtzan:{clip.genre}", "gtzan:*"}))
        halves.append("selection" if clip.split == "train" else "check")
    return clips, labels, np.asarray(halves)


def _clip_scores(job: tuple[str, str, int]) -> tuple[str, list[float] | str]:
    """In a worker: the clip's mean tag probabilities over at most `max_segments` segments spread over it
    (core.audio.load_segments, as an analysis takes them), the front-end on ONNX Runtime (LiteRT's outputs
    within 1e-5, and faster here). A clip that cannot be decoded gives its error instead."""
    from core.audio import load_segments
    from core.config import Settings
    from core.errors import UserError
    from core.frontend import load_frontend

    path, models_dir, max_segments = job
    global _frontend
    if _frontend is None:
        _frontend = load_frontend(Path(models_dir), runtime="onnx")
    try:
        segments = load_segments(path, max_seconds=Settings().max_clip_seconds, max_segments=max_segments)
    except UserError as exc:
        return path, str(exc)
    return path, _frontend.embed_segments(segments.audio)["tags"].mean(axis=0).tolist()


_frontend = None


def clip_scores(paths: list[Path], models_dir: Path, cache: Path, *, workers: int, max_segments: int,
                cached_only: bool = False) -> dict[str, np.ndarray]:
    """Path -> mean tag probabilities, for every clip that decodes. Each result is appended to `cache` (JSON
    lines) as it comes, so an interrupted run resumes where it stopped; `cached_only` fits on what is there.
    Clips are scored in a fixed random order, so the cache is at any point a sample of every source."""
    from concurrent.futures import ProcessPoolExecutor

    from core.analysis import init_worker

    done: dict[str, list[float] | str] = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            path, value = json.loads(line)
            done[path] = value
    order = np.random.default_rng(0).permutation(len(paths))
    todo = [] if cached_only else [(str(paths[i]), str(models_dir), max_segments) for i in order
                                   if str(paths[i]) not in done]
    cache.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=workers, initializer=init_worker) as pool, cache.open("a") as out:
        for i, (path, value) in enumerate(pool.map(_clip_scores, todo, chunksize=2), 1):
            done[path] = value
            out.write(json.dumps([path, value]) + "\n")
            out.flush()
            if i % 25 == 0 or i == len(todo):
                log.info("%d of %d clips scored", i, len(todo))
    for path, value in done.items():
        if isinstance(value, str):
            log.warning("skipping %s: %s", path, value)
    return {p: np.asarray(v, np.float32) for p, v in done.items() if not isinstance(v, str)}


def main() -> None:
    from core.config import DEFAULT_MODELS_DIR, PACKAGE_ROOT

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=PACKAGE_ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODELS_DIR / "tags.json")
    parser.add_argument("--cache", type=Path,
                        default=Path.home() / ".cache" / "cratedigger" / "tag-scores.jsonl")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-segments", type=int, default=4,
                        help="segments per clip, spread over it (a 30-s clip has 10; 4 cost less)")
    parser.add_argument("--cached-only", action="store_true", help="fit on the clips already scored")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    clips, labels, halves = load_clips(args.shared)
    by_path = clip_scores([c.path for c in clips], DEFAULT_MODELS_DIR, args.cache, workers=args.workers,
                          max_segments=args.max_segments, cached_only=args.cached_only)
    present = [i for i, c in enumerate(clips) if str(c.path) in by_path]
    scores = np.stack([by_path[str(clips[i].path)] for i in present])
    table = fit(scores, [labels[i] for i in present], halves[present])
    shown = {t: e for t, e in table.items() if "threshold" in e and e["check"]["shown"] >= CHECK_MIN
             and e["check"]["precision"] >= CHECK_VETO}
    doc = {
        "kind": "msd-tag-thresholds", "version": 1,
        "target_precision": TARGET_PRECISION, "wilson_lower_bound": LOWER_BOUND, "min_shown": MIN_SHOWN,
        "evidence": f"mood4q-dev ({sum(c.split == 'mood4q' for c in clips)} songs, AllMusic genres, quadrant "
                    f"and mood words) and gtzan-audio train+valid ({sum(c.split != 'mood4q' for c in clips)} "
                    "clips); thresholds chosen on the selection half, precision checked on the other",
        "command": f"python -m core.training.tag_thresholds --max-segments {args.max_segments}",
        "clips_scored": len(present),
        "thresholds": {t: e["threshold"] for t, e in shown.items()},
        "tags": table,
    }
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    for tag, e in table.items():
        verdict = ("shown" if tag in shown else "vetoed by the check half") if "threshold" in e else ""
        print(f"{tag:<16} +{e['positives']:<4} -{e['negatives']:<4} " + (
            f"threshold {e['threshold']:.4f}  selection {e['selection']}  check {e['check']}  {verdict}"
            if "threshold" in e else "not shown: never right often enough on the selection half"))


if __name__ == "__main__":
    main()
