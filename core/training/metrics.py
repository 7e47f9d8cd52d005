"""Metrics, and the confusion-matrix picture, shared by the training scripts."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.constants import GENRES


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int = len(GENRES)) -> np.ndarray:
    """(classes, classes) counts: rows the true class, columns the predicted one."""
    counts = np.zeros((classes, classes), dtype=int)
    np.add.at(counts, (truth, predicted), 1)
    return counts


def per_genre_recall(truth: np.ndarray, hits: np.ndarray) -> dict[str, dict[str, float | int]]:
    """Per genre present in `truth`: the share of its clips that were right (`hits`) and their count."""
    return {GENRES[g]: {"recall": round(float(hits[truth == g].mean()), 3), "n": int((truth == g).sum())}
            for g in np.unique(truth)}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Top-label ECE: |accuracy - confidence| over equal-width confidence bins, weighted by their count."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - confidence[sel].mean())
    return float(total)


def plot_confusion(confusion: np.ndarray | Sequence[Sequence[int]], path: Path, title: str) -> Path:
    """The confusion matrix as a PNG for a model card. No "Software" metadata (it names the matplotlib
    version), so the same matrix gives the same bytes and a retrained artefact can be checked with `cmp`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(GENRES)), GENRES, rotation=45, ha="right")
    ax.set_yticks(range(len(GENRES)), GENRES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = matrix.max()
    for (i, j), v in np.ndenumerate(matrix):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                    color="white" if v > top / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path


def fit_temperature(track_logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature T minimising the cross-entropy of softmax(track_logits / T) against `targets`.

    A mean of segment log-probabilities treats segments as independent experts, which they are not, so the
    untempered verdict is miscalibrated; T is fitted on held-out verdicts, never on the training ones."""
    from scipy.optimize import minimize_scalar

    def loss(log_t: float) -> float:
        logits = track_logits / np.exp(log_t)
        log_p = logits - logits.max(axis=1, keepdims=True)
        log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
        return float(-(targets * log_p).sum(axis=1).mean())

    best = minimize_scalar(loss, bounds=(np.log(0.05), np.log(50.0)), method="bounded")
    return float(np.exp(best.x))
