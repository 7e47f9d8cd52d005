"""Score the shipped models, through the same analysis a user's upload takes (`cratedigger evaluate`): the
genre model on one split of a folder in GTZAN's layout, the mood model on a folder in 4Q's layout
(`tracks.csv` with `file` and `quadrant` columns, as `../shared/data/mood4q-dev`). The team's checks on
held-back audio, runnable the day that audio is at hand."""
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


def evaluate_folder(data_dir: Path, split_dir: Path, subset: str, settings: Settings) -> dict[str, Any]:
    clips = [c for c in gtzan_clips(data_dir, split_dir) if c.split == subset]
    if not clips:
        raise BadDataset(f"{data_dir} holds no clip of the {subset} split")
    limits = Limits.of(settings)
    truth, probs, kinds, model, skipped = [], [], [], None, []
    for clip in tqdm(clips, desc=f"evaluate {subset}", unit="clip", disable=None):
        try:
            result = analyse(clip.path, limits, genre=True, mood=False, embedding=False)
        except UserError as exc:
            skipped.append(f"{clip.path.name}: {exc}")
            continue
        if result.genre_probs is None:
            raise BadDataset("no genre model is installed")
        model = result.genre_model
        truth.append(clip.label)
        probs.append([result.genre_probs[g] for g in GENRES])
        kinds.append(clip.kind)
    y, p = np.array(truth), np.array(probs)
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
