"""`cratedigger mood FILE...`: the mood of each file, from the model learned on listeners' answers."""
from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

from core.cli import Outcome
from core.config import Settings
from core.errors import UserError


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    mood = subparsers.add_parser("mood", help="mood of audio files (calm, happy, energetic, sad, ...)",
                                 parents=[parent])
    mood.add_argument("files", metavar="FILE", nargs="+", type=Path)
    mood.set_defaults(handler=estimate_moods)


@functools.cache
def _model(models_dir: Path) -> Any:
    """Loaded once per process; a missing artefact is the operator's to fix, so it is a one-line error."""
    from core.mood import load_mood_model

    model = load_mood_model(models_dir)
    if model is None:
        raise UserError(f"no mood model in {models_dir}: train one with "
                        f"`python -m core.training.mood_train --out {models_dir}`")
    return model


def estimate_moods(args: argparse.Namespace, settings: Settings) -> Outcome:
    from core.audio import load_segments
    from core.features import extract

    model = _model(settings.models_dir)
    documents: list[dict[str, Any]] = []
    lines: list[str] = []
    for path in args.files:
        segments = load_segments(path, max_seconds=settings.max_clip_seconds,
                                 max_segments=settings.max_segments)
        estimate = model.predict(segments, extract(segments))
        documents.append({"file": str(path), **estimate.to_dict()})
        ranked = sorted(estimate.moods.items(), key=lambda kv: kv[1], reverse=True)
        lines.append(f"{path}: {estimate.mood} (confidence {estimate.confidence:.0%}; "
                     + ", ".join(f"{m} {s:.2f}" for m, s in ranked) + ")")
    return Outcome(documents, "\n".join(lines))
