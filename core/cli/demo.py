"""`cratedigger demo`: the bot's use cases end to end, offline, on the bundled demo clips.

It prints what a Discord member would see for /genre, /similar, /recommend, /tag and a thumbs-down, in a
library of its own (`<data dir>/demo`), so it never touches a real server's data.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from core.cli import Outcome
from core.cli._service import with_service
from core.config import PACKAGE_ROOT, Settings
from core.mood import mood_summary
from core.service import Service

DEMO_CLIPS = PACKAGE_ROOT / "demo" / "clips"
DEMO_GUILD = 1
DEMO_USER = 1


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    demo = subparsers.add_parser("demo", help="try every command offline on the bundled demo clips",
                                 parents=[parent])
    demo.add_argument("--clips", type=Path, default=DEMO_CLIPS, help="folder of clips to use as the library")
    demo.set_defaults(handler=run_demo)


def _bar(p: float, width: int = 20) -> str:
    filled = round(p * width)
    return "█" * filled + "░" * (width - filled)


def _hits(hits: list[Any]) -> list[str]:
    return [f"  {i}. {h.title}  ({h.score:.2f}) — {h.reason}" for i, h in enumerate(hits, 1)]


async def _tour(service: Service, clips: Path) -> tuple[dict[str, Any], list[str]]:
    doc: dict[str, Any] = {}
    out: list[str] = []
    files = sorted(p for p in clips.iterdir() if p.is_file() and not p.name.startswith("."))
    out.append(f"» /library add  ({len(files)} demo clips from {clips})")
    added = await service.add_to_library(DEMO_GUILD, [clips], added_by=DEMO_USER)
    stats = await service.library_stats(DEMO_GUILD)
    doc["library"] = {"add": added.to_dict(), "stats": stats}
    already = len(added.duplicates) + len(added.already_there)
    out.append(f"  added {len(added.added)}, already there {already}, failed {len(added.failed)}; "
               f"{stats['indexed']} tracks indexed")

    probe = files[0]
    genre = await service.classify(probe, guild_id=DEMO_GUILD, user_id=DEMO_USER)
    doc["genre"] = genre.to_dict()
    out += ["", f"» /genre file:{probe.name}"]
    if genre.genre is None:
        out.append(f"  no genre model installed; analysed {genre.segments} segments of {genre.clip_seconds:.1f} s")
    else:
        out.append(f"  {genre.verdict} ({genre.confidence:.0%} confident, {genre.segments} segments, "
                   f"model {genre.model})")
        out += [f"  {g:<10} {_bar(p)} {p:.0%}" for g, p in genre.top]
        if genre.tags:
            out.append(f"  sounds like: {' · '.join(genre.tags)}")

    mood = await service.mood(probe)
    doc["mood"] = mood.to_dict()
    out += ["", f"» mood of {probe.name}"]
    out.append(f"  {mood_summary(mood.mood, mood.moods, mood.valence, mood.arousal)}" if mood.mood
               else "  no mood model installed")

    similar = await service.similar(DEMO_GUILD, probe, k=3, user_id=DEMO_USER)
    doc["similar"] = similar.to_dict()
    out += ["", f"» /similar file:{probe.name}", *_hits(similar.results)]

    library_map = await service.library_map(DEMO_GUILD)
    map_file = service.settings.data_dir / "library-map.png"
    map_file.write_bytes(library_map.png)
    doc["library_map"] = {**library_map.to_dict(), "file": str(map_file)}
    out += ["", "» /library map", f"  {library_map.tracks} tracks drawn by genre: {map_file}"]

    recs = await service.recommend(DEMO_GUILD, DEMO_USER, "calm", k=3)
    doc["recommend"] = [h.to_dict() for h in recs]
    out += ["", "» /recommend mood:calm", *_hits(recs)]

    if recs:
        first = recs[0]
        await service.feedback(DEMO_GUILD, DEMO_USER, first.track_id, up=False)
        out += ["", f"» 👎 on '{first.title}'"]
        tagged = recs[-1]
        await service.tag(DEMO_GUILD, DEMO_USER, tagged.track_id, "calm")
        out += [f"» /tag track:'{tagged.title}' mood:calm"]
        again = await service.recommend(DEMO_GUILD, DEMO_USER, "calm", k=3)
        doc["recommend_after_feedback"] = [h.to_dict() for h in again]
        out += ["", "» /recommend mood:calm  (again)", *_hits(again)]
    return doc, out


def run_demo(args: argparse.Namespace, settings: Settings) -> Outcome:
    demo_settings = settings.with_overrides(data_dir=settings.data_dir / "demo")
    shutil.rmtree(demo_settings.data_dir, ignore_errors=True)  # every run starts from the same library
    doc, lines = with_service(demo_settings, lambda s: _tour(s, args.clips))
    header = [
        "Cratedigger demo — what a Discord member would see (no DISCORD_TOKEN set, so no bot today).",
        f"Demo data lives in {demo_settings.data_dir}.", "",
    ]
    footer = ["", "Set DISCORD_TOKEN in .env (see README: 'Run it on your server') to start the bot."]
    return Outcome(doc, "\n".join(header + lines + footer))
