"""Score the shipped models, through the same analysis a user's upload takes (`cratedigger evaluate`): the
genre model on one split of a folder in GTZAN's layout, or on a folder whose `tracks.csv` lists each file's
genre (Emotify's `genre` column, one of ours; 4Q's AllMusic `genres`, scored on the team's six labels as
core.training.genre_weak reads them); the mood model on a folder in 4Q's layout (`tracks.csv` with `file`
and `quadrant` columns, as `../shared/data/mood4q-dev`). The team's checks on held-back audio, runnable the
day that audio is at hand."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from core.analysis import Limits, analyse
from core.config import Settings
from core.constants import GENRES
from core.errors import UserError
from core.training.genre_data import BadDataset, gtzan_clips
from core.training.metrics import confusion_matrix, expected_calibration_error, per_genre_recall


def _genre_verdicts(paths: list[Path], settings: Settings, desc: str,
                    ) -> tuple[list[int], np.ndarray, str | None, list[str]]:
    """Genre probabilities (clips, genres) of the files that decode, their positions in `paths`, the model's
    name, and a line per file skipped."""
    limits = Limits.of(settings)
    kept, probs, model, skipped = [], [], None, []
    for n, path in enumerate(tqdm(paths, desc=desc, unit="clip", disable=None)):
        try:
            result = analyse(path, limits, genre=True, mood=False, embedding=False)
        except UserError as exc:
            skipped.append(f"{path.name}: {exc}")
            continue
        if result.genre_probs is None:
            raise BadDataset("no genre model is installed")
        model = result.genre_model
        kept.append(n)
        probs.append([result.genre_probs[g] for g in GENRES])
    return kept, np.array(probs).reshape(len(probs), len(GENRES)), model, skipped


def evaluate_folder(data_dir: Path, split_dir: Path, subset: str, settings: Settings) -> dict[str, Any]:
    clips = [c for c in gtzan_clips(data_dir, split_dir) if c.split == subset]
    if not clips:
        raise BadDataset(f"{data_dir} holds no clip of the {subset} split")
    kept, p, model, skipped = _genre_verdicts([c.path for c in clips], settings, f"evaluate {subset}")
    y = np.array([clips[n].label for n in kept], int)
    kinds = [clips[n].kind for n in kept]
    predicted = p.argmax(axis=1)
    hits = predicted == y
    confusion = confusion_matrix(y, predicted)
    return {
        "model": model, "split": subset, "clips": int(len(y)), "skipped": skipped,
        "accuracy": round(float(hits.mean()), 4),
        "ece": round(expected_calibration_error(p.max(axis=1), hits), 4),
        "per_genre": per_genre_recall(y, hits),
        "per_kind": {k: round(float(hits[np.array(kinds) == k].mean()), 3) for k in sorted(set(kinds))},
        "genres": list(GENRES), "confusion": confusion.tolist(),
    }


def evaluate_mood_folder(data_dir: Path, settings: Settings) -> dict[str, Any]:
    """Quadrant figures of the shipped mood model on a 4Q-layout folder, read two ways: the six moods as a
    quadrant (Q1 = max(happy, energetic), Q2 tense, Q3 sad, Q4 calm: the team's reading) and the signs of
    valence and arousal."""
    import csv

    from core.mood import MOODS, QUADRANTS
    from core.training.mood_train import moods_as_quadrants, quadrant_figures

    table = data_dir / "tracks.csv"
    if not table.is_file():
        raise BadDataset(f"no tracks.csv in {data_dir} (a folder in 4Q's layout: file and quadrant columns)")
    with table.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("quadrant") in QUADRANTS]
    if not rows:
        raise BadDataset(f"{table} lists no song with a quadrant Q1-Q4")
    limits = Limits.of(settings)
    truth, moods, axes, skipped = [], [], [], []
    for row in tqdm(rows, desc="evaluate mood", unit="song", disable=None):
        try:
            result = analyse(data_dir / row["file"], limits, genre=False, mood=True, embedding=False)
        except UserError as exc:
            skipped.append(f"{row['file']}: {exc}")
            continue
        if result.mood_scores is None:
            raise BadDataset("no mood model is installed")
        truth.append(QUADRANTS.index(row["quadrant"]))
        moods.append([result.mood_scores[m] for m in MOODS])
        axes.append((result.valence, result.arousal))
    y, v_a = np.array(truth), np.array(axes)
    by_axes = np.select([(v_a[:, 0] >= 0) & (v_a[:, 1] >= 0), v_a[:, 1] >= 0, v_a[:, 0] < 0], [0, 1, 2], 3)
    return {"songs": int(len(y)), "skipped": skipped,
            "six_moods_as_quadrant": quadrant_figures(y, moods_as_quadrants(np.array(moods))),
            "valence_arousal_signs": quadrant_figures(y, np.eye(4)[by_axes])}


def listed_genres(table: Path) -> list[tuple[Path, str, tuple[str, ...]]]:
    """(file, label, genres that count as right) per row of a `tracks.csv` that names a genre: a `genres`
    column of AllMusic genres (4Q; rows with exactly one of the team's six labels) or a `genre` column of
    ours (Emotify; rows of other genres, such as its electronic, are left out)."""
    import csv

    from core.training.genre_weak import ALLMUSIC_TO_GENRES, check_label

    with table.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        if row.get("genres") is not None:
            label = check_label(row["genres"].split(";"))
            if label:
                out.append((table.parent / row["file"], label, ALLMUSIC_TO_GENRES[label]))
        elif row.get("genre") in GENRES:
            out.append((table.parent / row["file"], row["genre"], (row["genre"],)))
    if not out:
        raise BadDataset(f"{table} lists no file with a genre column naming one of ours or a 'genres' "
                         "column with one of Pop/Rock, Jazz, Blues, Rap, Country, Reggae")
    return out


def evaluate_listed_folder(data_dir: Path, settings: Settings) -> dict[str, Any]:
    """Genre figures on a folder whose tracks.csv names each file's genre (listed_genres): per label the
    recall and what its clips were called, their mean (macro), accuracy and ECE (right = the verdict is
    one of the label's genres)."""
    from collections import Counter

    listed = listed_genres(data_dir / "tracks.csv")
    kept, p, model, skipped = _genre_verdicts([path for path, _, _ in listed], settings, "evaluate genre")
    predicted = [GENRES[g] for g in p.argmax(axis=1)]
    labels = [listed[n][1] for n in kept]
    hits = np.array([g in listed[n][2] for n, g in zip(kept, predicted)])
    per_label: dict[str, Any] = {}
    for label in sorted(set(labels)):
        mine = [k for k, lab in enumerate(labels) if lab == label]
        per_label[label] = {"recall": round(float(hits[mine].mean()), 3), "n": len(mine),
                            "called": dict(Counter(predicted[k] for k in mine).most_common())}
    return {"model": model, "clips": len(kept), "skipped": skipped,
            "accuracy": round(float(hits.mean()), 4),
            "macro": round(float(np.mean([v["recall"] for v in per_label.values()])), 4),
            "ece": round(expected_calibration_error(p.max(axis=1), hits), 4), "per_label": per_label}
