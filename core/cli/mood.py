"""`cratedigger mood FILE...`: the mood of each file, from the model learned on listeners' labels."""
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


def mood_text(path: Path, doc: dict[str, Any]) -> str:
    """The file's top mood with its score, valence and arousal; every mood's score; the nine GEMS
    emotions (the share of listeners who would feel each), highest first."""
    from core.mood import mood_summary

    ranked = sorted(doc["moods"].items(), key=lambda kv: kv[1], reverse=True)
    gems = sorted(doc["gems"].items(), key=lambda kv: kv[1], reverse=True)
    return "\n".join([
        f"{path}: {mood_summary(doc['mood'], doc['moods'], doc['valence'], doc['arousal'])}",
        "  moods: " + ", ".join(f"{m} {s:.2f}" for m, s in ranked),
        "  GEMS (share of listeners who would feel it): "
        + ", ".join(f"{g.replace('_', ' ')} {s:.2f}" for g, s in gems),
    ])


def estimate_moods(args: argparse.Namespace, settings: Settings) -> Outcome:
    from core.analysis import Limits, analyse, mood_model

    if mood_model(settings.models_dir) is None:  # the operator's to fix: one line, exit 2
        raise UserError(f"no mood model (or no front-end) in {settings.models_dir}: train one with "
                        "`cratedigger train mood`")
    limits = Limits.of(settings)
    documents: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    for path in args.files:
        try:
            result = analyse(path, limits, genre=False, mood=True, embedding=False)
        except UserError as exc:  # the others are still tried; the document lists this one's reason
            documents.append({"file": str(path), "error": str(exc)})
            failures.append((str(path), str(exc)))
            continue
        documents.append({"file": str(path), "mood": result.mood, "confidence": result.mood_confidence,
                          "moods": result.mood_scores, "valence": result.valence, "arousal": result.arousal,
                          "gems": result.gems})
    text = "\n".join(f"{p}: error: {d['error']}" if "error" in d else mood_text(p, d)
                     for p, d in zip(args.files, documents))
    return items_outcome(documents, text, failures, len(documents), "files")
