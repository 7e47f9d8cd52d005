"""Genre models behind one interface: a clip's segment features in, a calibrated track verdict out.

Which model answers is chosen by `models/manifest.json` (first entry whose artefact and runtime are present),
so a better model drops in without touching the service or the bot.
"""
from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.constants import GENRES, SEGMENT_SECONDS, audio_constants
from core.errors import ModelMismatch
from core.features import SegmentFeatures

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CLOSE_CALL = 0.5
"""The runner-up is named beside the top genre when it is at least this fraction as likely as the top one
(a calibrated 45 % against 35 % is no verdict for one genre)."""
SECTION_SECONDS = 30.0
"""A long track gets one verdict per section of about this length, besides the overall one."""

LOADERS = {
    "descriptor": "core.genre.descriptor:load",
    "bilstm": "core.genre.bilstm:load",
}
"""Artefact kind -> `module:function(path: Path, entry: dict) -> GenreModel`."""


@dataclass(frozen=True)
class Section:
    start: float
    end: float
    genre: str
    confidence: float


@dataclass(frozen=True)
class GenreVerdict:
    """`probabilities` covers all of GENRES (calibrated, sums to 1); `segment_probabilities` is (n, 10)."""

    genre: str
    confidence: float
    probabilities: dict[str, float]
    segment_probabilities: np.ndarray
    sections: list[Section] = field(default_factory=list)
    model: str = ""

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: kv[1], reverse=True)[:k]


class GenreModel(Protocol):
    name: str

    def predict(self, features: SegmentFeatures) -> GenreVerdict:
        """Reads the feature families it needs (core.features computes each on first use)."""


def verdict_label(top: Sequence[tuple[str, float]]) -> str:
    """What a person is told: "jazz", or "jazz or blues" when the top two are close (CLOSE_CALL)."""
    if not top:
        return ""
    if len(top) > 1 and top[1][1] >= CLOSE_CALL * top[0][1]:
        return f"{top[0][0]} or {top[1][0]}"
    return top[0][0]


def clock(seconds: float) -> str:
    """m:ss, floored: 93 s is 1:33 (rounding the minutes made it 2:33)."""
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def track_parts(sections: Sequence[Section], clip_seconds: float) -> list[Section]:
    """Sections as consecutive parts of the track, as a listener reads them: each from the SECTION_SECONDS
    boundary its first segment falls in (by the segment's centre, as the models group them) to where the
    next part begins, the first from 0 and the last to the clip's end. A model's own sections span only the
    segments it analysed there, and a long track's segments are spread over it with gaps between them, so
    those spans left holes (0-30 s, 36-57 s) that looked like missing music. Each part's verdict is still
    the model's judgement of the segments analysed inside it."""
    if not sections:
        return []
    starts = [SECTION_SECONDS * np.floor((s.start + SEGMENT_SECONDS / 2) / SECTION_SECONDS) for s in sections]
    starts[0] = 0.0
    ends = [*starts[1:], max(clip_seconds, sections[-1].end)]
    return [Section(float(a), float(b), s.genre, s.confidence) for a, b, s in zip(starts, ends, sections)]


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def verdict_from_segments(
    segment_log_probs: np.ndarray, starts: np.ndarray, *, model: str, temperature: float = 1.0
) -> GenreVerdict:
    """Track verdict = softmax of the mean segment log-probability (a product of experts over segments),
    tempered by `temperature` fitted on validation data so the confidence is calibrated. Sections of
    SECTION_SECONDS get the same treatment over their own segments."""
    seg_logp = np.atleast_2d(segment_log_probs)
    track = softmax(seg_logp.mean(axis=0) / temperature)
    best = int(track.argmax())
    sections: list[Section] = []
    if starts.size and starts[-1] >= SECTION_SECONDS:
        bucket = ((starts + SEGMENT_SECONDS / 2) // SECTION_SECONDS).astype(int)  # by each segment's centre
        for b in np.unique(bucket):
            p = softmax(seg_logp[bucket == b].mean(axis=0) / temperature)
            sel = starts[bucket == b]
            sections.append(Section(float(sel[0]), float(sel[-1] + 3.0), GENRES[int(p.argmax())],
                                    float(p.max())))
    return GenreVerdict(
        genre=GENRES[best],
        confidence=float(track[best]),
        probabilities={g: float(p) for g, p in zip(GENRES, track)},
        segment_probabilities=softmax(seg_logp),
        sections=sections,
        model=model,
    )


def check_constants(recorded: dict[str, Any], artefact: str) -> None:
    """Refuse an artefact made with other audio constants than ours."""
    ours = audio_constants()
    diff = {k: (recorded.get(k), v) for k, v in ours.items() if recorded.get(k) != v}
    if diff:
        raise ModelMismatch(f"{artefact} was made with other audio constants (theirs, ours): {diff}")


def read_manifest(models_dir: Path) -> list[dict[str, Any]]:
    path = models_dir / MANIFEST
    if not path.is_file():
        return []
    return list(json.loads(path.read_text())["genre"])


def load_genre_model(models_dir: Path) -> GenreModel | None:
    """The first model of the manifest whose artefact and runtime are available; None if there is none."""
    for entry in read_manifest(models_dir):
        path = models_dir / entry["path"]
        if not path.exists():
            log.info("genre model %s is listed but %s is missing", entry.get("name"), path)
            continue
        module_name, func = LOADERS[entry["kind"]].split(":")
        try:
            return getattr(importlib.import_module(module_name), func)(path, entry)
        except (ImportError, FileNotFoundError) as exc:
            log.warning("genre model %s cannot run here: %s", entry.get("name"), exc)
    return None
