"""Score the shipped genre model, through the same analysis a user's upload takes, on one split of a folder
in GTZAN's layout (`cratedigger evaluate`): the team's check on held-back audio, runnable the day the whole
of GTZAN (or its test split's audio) is at hand."""
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
