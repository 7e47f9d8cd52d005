"""One clip in, everything we know about it out: the work that runs in the service's worker processes.

Models are loaded once per worker process (cached by models folder), never per request. These functions
take paths and plain settings and return plain data, so they pickle across a process pool.

One pass: the clip is decoded and cut once; each feature family (core.features.SegmentFeatures) is computed
the first time a model reads it and shared by the others, so the front-end runs once per segment for genre,
mood and embedding together, and nothing is computed that no loaded model reads.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.audio import decode, load_segments, overlapping, trim_silence
from core.background import become_background
from core.features import SegmentFeatures, extract

if TYPE_CHECKING:
    from core.config import Settings

log = logging.getLogger(__name__)

WORKER_NICENESS = 5
MAX_INFERENCE_THREADS = 4
_inference_threads = min(MAX_INFERENCE_THREADS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                         else os.cpu_count() or 1)
"""Threads the front-end runs on: every core for a process that analyses one clip at a time (the CLI: a
30-s clip's 10 segments take 88 ms of network on 2 threads against 172 ms on 1); one in a pool worker,
whose siblings have the other cores (init_worker)."""


@dataclass(frozen=True)
class Limits:
    """The part of Settings a worker needs (Settings itself holds the token, which we keep in one process)."""

    models_dir: Path
    max_seconds: float
    max_segments: int

    @classmethod
    def of(cls, settings: Settings, *, max_segments: int | None = None) -> Limits:
        """The limits `settings` sets for an upload, or with `max_segments` instead (a library track's)."""
        return cls(settings.models_dir, settings.max_clip_seconds,
                   settings.max_segments if max_segments is None else max_segments)


@dataclass(frozen=True)
class ClipAnalysis:
    """Plain, picklable results for one clip. Genre/mood fields are None when no such model is installed."""

    name: str
    clip_seconds: float
    segments: int
    genre: str | None = None
    genre_confidence: float | None = None
    genre_top: list[tuple[str, float]] = field(default_factory=list)
    genre_probs: dict[str, float] | None = None
    genre_model: str | None = None
    sections: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    """MSD tags that fire clearly on the clip (core.tags), clearest first."""
    mood: str | None = None
    mood_confidence: float | None = None
    mood_scores: dict[str, float] | None = None
    valence: float | None = None
    arousal: float | None = None
    gems: dict[str, float] | None = None
    embedding: np.ndarray | None = None
    embedding_kind: str | None = None
    segment_embeddings: np.ndarray | None = None
    """(n, 200) each segment's front-end embedding, which the segment-level index holds (core.segment_match)."""
    segment_tags: np.ndarray | None = None
    """(n, 50) each segment's tag probabilities, for reasons that name what two tracks share."""
    segment_starts: np.ndarray | None = None
    fingerprint: np.ndarray | None = None
    """(n, 2) landmarks (core.fingerprint): of the analysed sections for a library track, of the whole clip
    for a /similar query, so a copy or an excerpt of a library track is recognised as that recording; None
    unless `analyse` was asked for it."""
    features_summary: dict[str, float] = field(default_factory=dict)


def init_worker(memory_mb: int = 0, warm_models: Path | None = None) -> None:
    """Process-pool initializer: one thread of numeric work per process, quiet TensorFlow, a lower priority
    than the bot's event loop (which must keep answering Discord while analyses run) and a memory cap.
    With `warm_models`, the worker also warms up (warm_up) before it takes its first task. At its end the
    worker skips the interpreter's tear-down (`_exit_without_teardown`)."""
    global _inference_threads
    if multiprocessing.parent_process() is not None:  # a pool's worker, never a command's own process
        atexit.register(_exit_without_teardown)
    # Both pools that start from here hand their heap back after every task (core.jobs.pool, fetches).
    become_background(WORKER_NICENESS, memory_mb, map_large_blocks=False)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _inference_threads = 1
    if warm_models is not None:
        warm_up(warm_models)


def _exit_without_teardown() -> None:
    """A spawned worker that has finished (its pool shut down, multiprocessing's own clean-up done) ends
    here instead of in Python's tear-down of every module and object (ONNX Runtime, numba, the heap of an
    analysis): that tear-down took 0.15-0.24 s a worker and made a warmed pool's shutdown, which every
    command that analyses waits for, 0.35-0.73 s instead of 0.04-0.23 (loaded machine). A worker holds
    nothing to save: its results went back with each task."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(0)


def warm_up(models_dir: Path) -> None:
    """Analyse four seconds of a tone once, so that a fresh worker's first request is timed on its own work:
    imports, model loading and numba's first compilations took over 15 s of a task's time bound on a loaded
    machine. A failure here is only logged: the first real task then pays for the loading itself."""
    import tempfile

    import soundfile as sf

    from core.constants import SAMPLE_RATE

    try:
        with tempfile.TemporaryDirectory(prefix="cratedigger-warm-") as folder:
            path = Path(folder) / "warm.wav"
            t = np.arange(int(4 * SAMPLE_RATE)) / SAMPLE_RATE
            sf.write(path, (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32), SAMPLE_RATE)
            analyse(path, Limits(models_dir, max_seconds=60.0, max_segments=1))
    except Exception:  # noqa: BLE001 - a worker that cannot warm up still serves; its first task says why
        log.info("a worker could not warm up", exc_info=True)


@functools.cache
def frontend(models_dir: Path) -> Any:
    """The shipped front-end, or None when its artefact is absent (models that read it are then skipped)."""
    from core.frontend import artefact_path, load_frontend

    if not artefact_path(models_dir).is_file():
        log.info("no front-end at %s", artefact_path(models_dir))
        return None
    return load_frontend(models_dir, threads=_inference_threads)


@functools.cache
def genre_model(models_dir: Path) -> Any:
    from core.genre import load_genre_model

    return load_genre_model(models_dir)


@functools.cache
def mood_model(models_dir: Path) -> Any:
    from core.mood import load_mood_model

    return load_mood_model(models_dir)


def analysis_version(models_dir: Path) -> str:
    """Names what produced a track's stored analysis; a change means the library must be re-analysed."""
    from core.embedding import EMBEDDING_KIND
    from core.fingerprint import VERSION_TAG
    from core.segment_match import SEGMENT_KIND

    genre = genre_model(models_dir)
    mood = mood_model(models_dir)
    network = frontend(models_dir)
    return "|".join([
        f"frontend={'none' if network is None else network.name}",
        f"genre={getattr(genre, 'name', 'none')}",
        f"mood={getattr(mood, 'name', 'none') if mood is not None else 'none'}",
        f"embedding={EMBEDDING_KIND}",
        f"index={SEGMENT_KIND}",
        VERSION_TAG,
    ])


def features_summary(features: SegmentFeatures) -> dict[str, Any]:
    """What was analysed, without computing anything more."""
    return {"segments": len(features), "families": features.computed()}


def _genre_fields(features: SegmentFeatures, limits: Limits, clip_seconds: float) -> dict[str, Any]:
    from core.genre import track_parts

    model = genre_model(limits.models_dir)
    if model is None:
        return {}
    verdict = model.predict(features)
    from core.tags import clear_tags, thresholds

    return {
        "tags": clear_tags(features.tags, thresholds(limits.models_dir)),
        "genre": verdict.genre,
        "genre_confidence": verdict.confidence,
        "genre_top": verdict.top(3),
        "genre_probs": verdict.probabilities,
        "genre_model": verdict.model,
        "sections": [
            {"start": s.start, "end": s.end, "genre": s.genre, "confidence": s.confidence}
            for s in track_parts(verdict.sections, clip_seconds)
        ],
    }


def _mood_fields(features: SegmentFeatures, limits: Limits) -> dict[str, Any]:
    model = mood_model(limits.models_dir)
    if model is None:
        return {}
    estimate = model.predict(features)
    return {"mood": estimate.mood, "mood_confidence": estimate.confidence, "mood_scores": estimate.moods,
            "valence": estimate.valence, "arousal": estimate.arousal, "gems": estimate.gems}


def analyse(path: str | Path, limits: Limits, *, genre: bool = True, mood: bool = True,
            embedding: bool = True, fingerprint: bool = False, name: str | None = None,
            hop: float | None = None) -> ClipAnalysis:
    """decode → segments → features → the models asked for.

    With `hop` (a /similar query), the segments overlap, starting every `hop` seconds (at most
    `limits.max_segments` of them): they then line up closely with the sections a library track was
    analysed on. With `fingerprint`, the clip is also fingerprinted (core.fingerprint): a query on the whole
    clip, a library track on the sections it was analysed on, which is all of it that was decoded. Only
    library tracks and /similar queries ask for it: it is matched nowhere else, and cost 20-30 ms a clip
    (/genre with a map and /map --mark embed the clip but never match a recording)."""
    name = name or Path(path).name
    clip: np.ndarray | None = None
    if hop is None:
        segments = load_segments(path, max_seconds=limits.max_seconds, max_segments=limits.max_segments)
    else:
        clip = trim_silence(decode(path, max_seconds=limits.max_seconds), name=Path(path).name)
        segments = overlapping(clip, hop=hop, max_segments=limits.max_segments)
    network = frontend(limits.models_dir)
    features = extract(segments, network.embed_segments if network is not None else None)
    fields: dict[str, Any] = {}
    if genre:
        fields.update(_genre_fields(features, limits, segments.clip_seconds))
    if mood:
        fields.update(_mood_fields(features, limits))
    if embedding:
        from core.embedding import EMBEDDING_KIND, embed

        fields["embedding"] = embed(features)
        fields["embedding_kind"] = EMBEDDING_KIND
        if network is not None:
            fields["segment_embeddings"] = np.asarray(features.embeddings, np.float32)
            fields["segment_tags"] = np.asarray(features.tags, np.float32)
            fields["segment_starts"] = np.asarray(features.starts, np.float32)
    if fingerprint:
        from core import fingerprint as landmarks

        fields["fingerprint"] = (landmarks.fingerprint(clip) if clip is not None
                                 else landmarks.fingerprint_sections(segments.audio, segments.starts))
    return ClipAnalysis(name=name, clip_seconds=segments.clip_seconds, segments=len(segments),
                        features_summary=features_summary(features), **fields)
