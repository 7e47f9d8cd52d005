"""`cratedigger recommend|tag|feedback|history`: a member's side of the bot, from a shell."""
from __future__ import annotations

import argparse

from core.cli import Outcome
from core.cli._service import CLI_GUILD, database_id, with_service
from core.cli.similar import render_hits
from core.config import Settings


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    who = argparse.ArgumentParser(add_help=False)
    who.add_argument("--user", type=database_id, required=True, help="the member (a Discord user id)")
    who.add_argument("--guild", type=database_id, default=CLI_GUILD,
                     help="whose library (a Discord guild id)")

    rec = subparsers.add_parser("recommend", help="tracks for a mood, personalised", parents=[parent, who])
    rec.add_argument("--mood", required=True, help="calm, happy, energetic, sad, nostalgic or tense")
    rec.add_argument("-k", type=int, default=5, help="how many tracks (1-25)")
    rec.set_defaults(handler=recommend)

    tag = subparsers.add_parser("tag", help="say which mood a track has for you", parents=[parent, who])
    tag.add_argument("track_id", type=database_id)
    tag.add_argument("mood")
    tag.set_defaults(handler=tag_track)

    feedback = subparsers.add_parser("feedback", help="thumbs up or down on a track", parents=[parent, who])
    feedback.add_argument("track_id", type=database_id)
    feedback.add_argument("verdict", choices=["up", "down"])
    feedback.set_defaults(handler=give_feedback)

    history = subparsers.add_parser("history", help="what a member did lately", parents=[parent, who])
    history.add_argument("-n", type=int, default=20, help="how many entries")
    history.set_defaults(handler=show_history)


def recommend(args: argparse.Namespace, settings: Settings) -> Outcome:
    k = max(1, min(25, args.k))
    hits = with_service(settings, lambda s: s.recommend(args.guild, args.user, args.mood, k=k))
    return Outcome({"results": [h.to_dict() for h in hits]}, render_hits(hits))


def tag_track(args: argparse.Namespace, settings: Settings) -> Outcome:
    mood = with_service(settings, lambda s: s.tag(args.guild, args.user, args.track_id, args.mood))
    return Outcome({"track_id": args.track_id, "mood": mood}, f"tagged track {args.track_id} as {mood}")


def give_feedback(args: argparse.Namespace, settings: Settings) -> Outcome:
    up = args.verdict == "up"
    with_service(settings, lambda s: s.feedback(args.guild, args.user, args.track_id, up))
    return Outcome({"track_id": args.track_id, "feedback": args.verdict},
                   f"noted: thumbs {args.verdict} for track {args.track_id}")


def show_history(args: argparse.Namespace, settings: Settings) -> Outcome:
    items = with_service(settings, lambda s: s.history(args.guild, args.user, limit=max(1, args.n)))
    text = "\n".join(f"{i.at}  {i.kind:<11} {i.title or ''} {i.detail}".rstrip() for i in items) or "no history"
    return Outcome({"history": [i.to_dict() for i in items]}, text)
