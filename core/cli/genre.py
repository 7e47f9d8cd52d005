"""`cratedigger genre FILE_OR_LINK... [--json]`: a calibrated genre verdict per audio file or link.

JSON: always a list, one object per file or link, in the order given:
  {"file", "genre", "confidence", "top": [[genre, p], ...], "segments", "model", "sections": [...],
   "clip_seconds", "verdict", "tags": [tag, ...]}
`verdict` is what the text shows: the genre, or "jazz or blues" when the runner-up is at least half as likely
as the top genre; the probabilities are in "top". `tags` are the Million Song Dataset tags that fire clearly
on the clip ("jazz", "mellow", ...), clearest first, at most three and often none: only tags whose threshold
was chosen on labelled audio to be right at least 80 % of the time (models/tags.json, models/tags.md).
For a link, "file" is the link as given and "title" what the site calls the track. A Spotify, Apple Music,
Deezer or Tidal track link is resolved to its artist and title and searched for (CRATEDIGGER_TRACK_SEARCH);
"resolved" then says what was analysed: {"service", "artist", "title", "duration", "link", "source_url",
"source", "found_by"}, and the text says "analysed Artist – Title from YouTube, found by its title".
Links get the bot's rules: the same pre-check and guard proxy (private and local addresses refused),
download and duration caps, and only the first CRATEDIGGER_LINK_ANALYSE_SECONDS analysed; a playlist (or a
streaming service's album) is refused.
`sections` ({"start", "end", "genre", "confidence"}, seconds) is empty unless the clip is long enough for
more than one ~30-s window; they are the track's consecutive parts (0 to its end, no gaps), each judged on
the 3-s segments analysed inside it (a long track's segments are spread over it, so not every second of
a part is heard). Without an installed genre model, "genre", "confidence" and "model" are null,
"note" says "no genre model installed" and "features" summarises what was analysed.

Bad input: every file is tried; if any failed, the document is still printed (a failed file's object is
{"file", "error"}) and the command exits 2 with one line on stderr: the reason when there was one file, else
how many failed and the first reason.

Several files are analysed one after another with the model loaded once, so a list costs one start-up.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.analysis import ClipAnalysis, Limits, analyse
from core.cli import Outcome, items_outcome
from core.config import Settings
from core.errors import UserError
from core.fetch import is_link
from core.genre import clock, verdict_label
from core.resolve import resolved_line

NO_MODEL = "no genre model installed"


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    genre = subparsers.add_parser("genre", help="genre verdict per audio file", parents=[parent],
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    genre.add_argument("files", metavar="FILE_OR_LINK", nargs="+",
                       help="audio files (wav, mp3, ogg, ...) or http(s) links to a track")
    genre.set_defaults(handler=classify_files)


def file_report(result: ClipAnalysis) -> dict[str, Any]:
    """The contract's per-file object for one analysed clip."""
    doc: dict[str, Any] = {
        "file": result.name,
        "genre": result.genre,
        "confidence": None if result.genre_confidence is None else round(result.genre_confidence, 4),
        "top": [[g, round(p, 4)] for g, p in result.genre_top],
        "segments": result.segments,
        "model": result.genre_model,
        "sections": [{"start": round(s["start"], 2), "end": round(s["end"], 2), "genre": s["genre"],
                      "confidence": round(s["confidence"], 4)} for s in result.sections],
        "clip_seconds": round(result.clip_seconds, 2),
        "verdict": verdict_label(result.genre_top),
        "tags": list(result.tags),
    }
    if result.genre is None:
        doc["note"] = NO_MODEL
        doc["features"] = result.features_summary
    return doc


def _analyse(item: str, settings: Settings) -> dict[str, Any]:
    limits = Limits.of(settings)
    if not is_link(item):
        path = Path(item)
        return file_report(analyse(path, limits, genre=True, mood=False, embedding=False, name=str(path)))
    from core.fetch import fetch_audio
    from core.resolve import resolve_link

    resolved = resolve_link(item, settings)
    source = resolved.source_url if resolved else item
    with fetch_audio(source, settings, settings.data_dir / "tmp") as fetched:
        doc = file_report(analyse(fetched.path, limits, genre=True, mood=False, embedding=False, name=item))
    if resolved is None:
        return {"file": doc.pop("file"), "title": fetched.title, **doc}
    return {"file": doc.pop("file"), "title": resolved.label, **doc, "resolved": resolved.to_dict()}


def render(docs: list[dict[str, Any]]) -> str:
    """A short table a person reads: one line per file, then any sections."""
    width = max(len("file"), *(len(d["file"]) for d in docs))
    verdict_width = max(len("genre"), *(len(d.get("verdict") or "") for d in docs))
    lines = [f"{'file':<{width}}  {'genre':<{verdict_width}}  {'conf':>4}  segs  top 3"]
    for d in docs:
        if "error" in d:
            lines.append(f"{d['file']:<{width}}  error: {d['error']}")
        elif d["genre"] is None:
            lines.append(f"{d['file']:<{width}}  ({NO_MODEL}) {d['segments']} segments of "
                         f"{d['clip_seconds']:.1f} s analysed")
        else:
            top = ", ".join(f"{g} {p:.0%}" for g, p in d["top"])
            lines.append(f"{d['file']:<{width}}  {d['verdict']:<{verdict_width}}  {d['confidence']:>4.0%}  "
                         f"{d['segments']:>4}  {top}")
            if d.get("tags"):
                lines.append(f"{'':<{width}}  sounds like: {' · '.join(d['tags'])}")
    for d in docs:
        for s in d.get("sections", []):
            lines.append(f"  {d['file']} {clock(s['start']):>5}-{clock(s['end'])}: {s['genre']} "
                         f"({s['confidence']:.0%})")
    for d in docs:
        if d.get("resolved"):
            lines.append(f"  {d['file']}: {resolved_line(d['resolved'])}")
    models = {d["model"] for d in docs if d.get("model")}
    if models:
        lines.append(f"model: {', '.join(sorted(models))}")
    return "\n".join(lines)


def classify_files(args: argparse.Namespace, settings: Settings) -> Outcome:
    docs, failures = [], []
    for item in args.files:
        try:
            docs.append(_analyse(item, settings))
        except UserError as exc:
            docs.append({"file": item, "error": str(exc)})
            failures.append((item, str(exc)))
    return items_outcome(docs, render(docs), failures, len(docs), "files")
