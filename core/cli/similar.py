"""`cratedigger similar LINK_OR_FILE [-k N]`: the nearest tracks of the library.

JSON: {"query", "results": [{"track_id", "title", "source", "score", "reason"}]}. For a Spotify, Apple Music,
Deezer or Tidal track link, "query" is "Artist – Title" and "resolved" says what was analysed (as in
`cratedigger genre`); the text's first line says it too.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from core.cli import Outcome
from core.cli._service import CLI_GUILD, database_id, with_service
from core.config import Settings
from core.fetch import is_link
from core.resolve import resolved_line
from core.service import SimilarReport


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    similar = subparsers.add_parser("similar", help="tracks of the library that sound like a link or file",
                                    parents=[parent])
    similar.add_argument("query", metavar="LINK_OR_FILE")
    similar.add_argument("-k", type=int, default=5, help="how many tracks (1-25)")
    similar.add_argument("--guild", type=database_id, default=CLI_GUILD,
                         help="whose library (a Discord guild id)")
    similar.set_defaults(handler=find_similar)


def render_hits(hits: list) -> str:
    if not hits:
        return "nothing found"
    return "\n".join(f"{i}. [{h.track_id}] {h.title}  ({h.score:.2f}) — {h.reason}" for i, h in enumerate(hits, 1))


def find_similar(args: argparse.Namespace, settings: Settings) -> Outcome:
    k = max(1, min(25, args.k))
    query: str | Path = args.query if is_link(args.query) else Path(args.query)
    report: SimilarReport = with_service(settings, lambda s: s.similar(args.guild, query, k=k))
    header = f"closest to {report.query}:"
    if report.resolved:
        header = f"{resolved_line(report.resolved)}\n{header}"
    return Outcome(report.to_dict(), f"{header}\n{render_hits(report.results)}")
