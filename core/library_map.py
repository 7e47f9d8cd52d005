"""A map of a library: every track a point in two dimensions, coloured by genre, as a PNG.

The projection is PCA of the tracks' embeddings (the same L2-normalised vectors the index searches): its two
directions of largest spread, fitted through the d x d covariance, so the cost is linear in the tracks (a
50 000-track library is a few hundred ms; benchmarks/bench_map.py measures it). PCA rather than t-SNE or
UMAP: deterministic, no extra dependency, and a new clip is placed by the same linear map, so `/genre` and
`/similar` can mark where the asked clip falls on the cached map of the library.

Drawn with matplotlib's object API on the Agg canvas (no pyplot state: safe in a worker thread) as a dark
card (Discord's dark theme's own grey, so it sits in the chat on the dark theme and reads as a card on the
light one), light text, a palette that reads on dark grey, and the legend outside the points.
"""
from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.constants import GENRES

BACKGROUND = "#2b2d31"
"""Discord's dark theme's message background."""
TEXT = "#dbdee1"
UNKNOWN = "no genre"
PALETTE = {
    "blues": "#5b9cf6", "classical": "#e6c86e", "country": "#d98b4f", "disco": "#f06fb0",
    "hiphop": "#b083f0", "jazz": "#4fd1c5", "metal": "#ef5350", "pop": "#f6a5c0",
    "reggae": "#7bd36f", "rock": "#ff9f43", UNKNOWN: "#80848e",
}
"""One colour per genre, each distinct on the dark background (and from its neighbours in the legend)."""
MAX_DRAWN = 20_000
"""Past this many tracks a random sample (fixed seed) is drawn: at Discord's preview size more points add
ink, not information, and the drawing's time and memory stay bounded (the legend counts every track)."""


@dataclass(frozen=True)
class Projection:
    """Centre and the two principal directions: vectors (n, d) -> points (n, 2)."""

    mean: np.ndarray
    components: np.ndarray

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        return ((np.atleast_2d(vectors).astype(np.float64) - self.mean) @ self.components).astype(np.float32)


def fit_projection(vectors: np.ndarray) -> Projection:
    """PCA to two dimensions through the covariance matrix (d x d): O(n d^2) time, one float32 copy of the
    vectors in memory. Each direction's sign is fixed (its largest coordinate positive) so a refit draws the
    same map."""
    x = np.asarray(vectors, np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"vectors of shape {x.shape}: a map needs at least one track")
    mean = x.mean(axis=0, dtype=np.float64)
    centred = x - mean.astype(np.float32)
    covariance = (centred.T @ centred).astype(np.float64) / max(1, len(x) - 1)
    _, eigenvectors = np.linalg.eigh(covariance)
    components = eigenvectors[:, ::-1][:, :2].copy()
    if components.shape[1] < 2:  # one-dimensional vectors: a flat second axis
        components = np.hstack([components, np.zeros((len(mean), 1))])
    signs = np.sign(components[np.abs(components).argmax(axis=0), range(2)])
    return Projection(mean, components * np.where(signs == 0, 1, signs))


def draw_map(points: np.ndarray, genres: Sequence[str | None], *, title: str,
             mark: np.ndarray | None = None, mark_label: str | None = None) -> bytes:
    """(n, 2) points with each track's genre (None: not analysed) -> PNG bytes; `mark` (2,) is drawn as a
    star with `mark_label` in the legend."""
    labels = np.asarray([g if g in PALETTE else UNKNOWN for g in genres], dtype=object)
    counts = Counter(labels.tolist())
    if len(points) > MAX_DRAWN:
        keep = np.random.default_rng(0).choice(len(points), MAX_DRAWN, replace=False)
        points, labels = points[keep], labels[keep]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 6), dpi=100, layout="constrained", facecolor=BACKGROUND)
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(w_pad=0.15, h_pad=0.12)  # inches: nothing touches the card's edge
    ax = fig.add_subplot()
    ax.margins(0.06)
    ax.set_facecolor(BACKGROUND)
    size = float(np.clip(3000 / max(1, len(points)) ** 0.8, 2, 90))
    order = [g for g in (*GENRES, UNKNOWN) if counts.get(g)]
    for genre in sorted(order, key=lambda g: -counts[g]):  # the largest first, so small genres stay visible
        chosen = labels == genre
        ax.scatter(points[chosen, 0], points[chosen, 1], s=size, c=PALETTE[genre], alpha=0.75, linewidths=0,
                   label=f"{genre} ({counts[genre]})", rasterized=True)
    if mark is not None:
        ax.scatter([mark[0]], [mark[1]], s=400, marker="*", c="#ffffff", edgecolors="#1e1f22", linewidths=1.0,
                   zorder=5, label=mark_label or "your clip")
    handles, names = ax.get_legend_handles_labels()
    by_name = dict(zip(names, handles))
    legend_order = [f"{g} ({counts[g]})" for g in order]
    if mark is not None:
        legend_order.append(mark_label or "your clip")
    legend = ax.legend([by_name[n] for n in legend_order], legend_order, loc="upper left",
                       bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=12, labelcolor=TEXT,
                       handletextpad=0.3, borderaxespad=0)
    for i, handle in enumerate(legend.legend_handles):  # one readable size, whatever the points' size
        handle.set_alpha(1.0)
        handle.set_sizes([220 if mark is not None and i == len(legend_order) - 1 else 70])
    ax.set_title(title, color=TEXT, fontsize=15, loc="left")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.text(0.99, 0.01, "near = sounds alike", transform=ax.transAxes, ha="right", va="bottom",
            color="#949ba4", fontsize=10)
    out = io.BytesIO()
    fig.savefig(out, format="png", facecolor=BACKGROUND)
    return out.getvalue()
