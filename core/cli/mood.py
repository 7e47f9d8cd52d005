"""`cratedigger mood FILE...`: the mood of each file, from the model learned on listeners' answers."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.cli import Outcome, items_outcome
from core.config import Settings
from core.errors import UserError


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    mood = subparsers.add_parser("mood", help="mood of audio files (calm, happy, energetic, sad, ...)",
                                 parents=[parent])
    mood.add_argument("files", metavar="FILE", nargs="+", type=Path)
    mood.set_defaults(handler=estimate_moods)


def estimate_moods(args: argparse.Namespace, settings: Settings) -> Outcome:
    from core.analysis import Limits, analyse, mood_model

    if mood_model(settings.models_dir) is None:  # the operator's to fix: one line, exit 2
        raise UserError(f"no mood model (or no front-end) in {settings.models_dir}: train one with "
                        f"`python -m core.training.mood_train --out {settings.models_dir}`")
    limits = Limits.of(settings)
    documents: list[dict[str, Any]] = []
    lines: list[str] = []
    failures: list[tuple[str, str]] = []
    for path in args.files:
        try:
            result = analyse(path, limits, genre=False, mood=True, embedding=False)
        except UserError as exc:  # the others are still tried; the document lists this one's reason
            documents.append({"file": str(path), "error": str(exc)})
            failures.append((str(path), str(exc)))
            lines.append(f"{path}: error: {exc}")
            continue
        documents.append({"file": str(path), "mood": result.mood, "confidence": result.mood_confidence,
                          "moods": result.mood_scores, "gems": result.gems})
        ranked = sorted((result.mood_scores or {}).items(), key=lambda kv: kv[1], reverse=True)
        lines.append(f"{path}: {result.mood} (confidence {result.mood_confidence:.0%}; "
                     + ", ".join(f"{m} {s:.2f}" for m, s in ranked) + ")")
    return items_outcome(documents, "\n".join(lines), failures, len(documents), "files")
