"""`cratedigger library add|reindex|stats|map`: what a server admin does, from a shell.

`add` and `reindex` exit 2 when any item failed (the report, failures included, is still printed): 0 means
everything given is in the library."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from core.cli import Outcome, failures_line, items_outcome
from core.cli._service import CLI_GUILD, database_id, with_service
from core.config import Settings
from core.errors import UserError
from core.library import AddReport, ReindexReport
from core.service import Service


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    lib = subparsers.add_parser("library", help="add tracks, reindex, show stats", parents=[parent])
    verbs = lib.add_subparsers(dest="library_verb", metavar="ACTION", required=True)
    guild = argparse.ArgumentParser(add_help=False)
    guild.add_argument("--guild", type=database_id, default=CLI_GUILD,
                       help="whose library (a Discord guild id)")

    add = verbs.add_parser("add", help="add files, folders (recursively) or links", parents=[parent, guild])
    add.add_argument("sources", nargs="+", metavar="PATH_OR_URL")
    add.set_defaults(handler=add_tracks)

    reindex = verbs.add_parser("reindex", help="re-analyse what changed and rebuild the index",
                               parents=[parent, guild])
    reindex.add_argument("--full", action="store_true", help="re-analyse every track")
    reindex.set_defaults(handler=reindex_library)

    stats = verbs.add_parser("stats", help="how many tracks, how many indexed", parents=[parent, guild])
    stats.set_defaults(handler=library_stats)

    lmap = verbs.add_parser("map", help="draw every track as a point, coloured by genre, into a PNG",
                            parents=[parent, guild])
    lmap.add_argument("--out", type=Path, required=True, metavar="FILE.png", help="where the PNG goes")
    lmap.add_argument("--mark", metavar="FILE_OR_LINK", default=None,
                      help="also analyse this clip and mark where it falls")
    lmap.set_defaults(handler=library_map)


class _Bar:
    """A tqdm progress bar on stderr (tracks/s and ETA), fed by the service's progress callback. An add's
    total grows while its files are still being registered: the bar's total follows it."""

    def __init__(self, description: str, enabled: bool) -> None:
        self.description = description
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.description, unit="track", file=sys.stderr)
        if total != self.bar.total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _add_text(report: AddReport, limit: int) -> str:
    lines = [f"added {len(report.added)} track(s), "
             f"{len(report.duplicates) + len(report.already_there)} already there, {len(report.failed)} failed"]
    lines += [f"  + [{a.track_id}] {a.title}" for a in report.added]
    lines += [f"  = {a.source}: {a.message} (track {a.track_id})" for a in report.already_there]
    lines += [f"  ! {source}: {reason}" for source, reason in report.failed]
    if report.left_out:
        lines.append(f"{'at least ' if report.left_out_is_minimum else ''}{report.left_out} playlist "
                     f"entr{'y' if report.left_out == 1 else 'ies'} left out (at most {limit} are "
                     "downloaded per call; add the link again to continue)")
    return "\n".join(lines)


def add_tracks(args: argparse.Namespace, settings: Settings) -> Outcome:
    downloads = _Bar("downloading playlist entries", enabled=not args.json)
    bar = _Bar("analysing", enabled=not args.json)
    try:
        # the files are registered, and the first analysed, while the workers start
        report = with_service(settings, lambda s: s.add_to_library(args.guild, args.sources, progress=bar,
                                                                   fetch_progress=downloads),
                              wait_for_workers=False)
    finally:
        downloads.close()
        bar.close()
    tried = len(report.added) + len(report.duplicates) + len(report.already_there) + len(report.failed)
    return items_outcome(report.to_dict(), _add_text(report, settings.max_playlist_entries), report.failed,
                         tried, "items")


def _reindex_text(report: ReindexReport) -> str:
    text = (f"analysed {report.analysed} track(s) in {report.seconds:.1f} s "
            f"({report.tracks_per_second:.1f} tracks/s), {report.skipped} up to date, "
            f"{len(report.failed)} failed; the index holds {report.index_size}")
    return "\n".join([text, *(f"  ! {source}: {reason}" for source, reason in report.failed)])


def reindex_library(args: argparse.Namespace, settings: Settings) -> Outcome:
    bar = _Bar("reindexing", enabled=not args.json)
    try:
        report = with_service(settings, lambda s: s.reindex(args.guild, full=args.full, progress=bar))
    finally:
        bar.close()
    return Outcome(report.to_dict(), _reindex_text(report),
                   error=failures_line(report.failed, report.analysed + len(report.failed), "tracks"))


def library_stats(args: argparse.Namespace, settings: Settings) -> Outcome:
    async def go(service: Service) -> dict[str, Any]:
        return await service.library_stats(args.guild)

    stats = with_service(settings, go)
    return Outcome(stats, _stats_text(stats))


def _stats_text(stats: dict[str, Any]) -> str:
    """Plain words; `--json` keeps the machine detail (index backend, the models' version string)."""
    return (f"{stats['tracks']} track(s): {stats['ready']} ready, {stats['pending']} waiting for a reindex, "
            f"{stats['failed']} failed\n{stats['indexed']} searchable (in the similarity index)")


def library_map(args: argparse.Namespace, settings: Settings) -> Outcome:
    report = with_service(settings, lambda s: s.library_map(args.guild, mark=args.mark))
    try:
        args.out.write_bytes(report.png)
    except OSError as exc:
        raise UserError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    genres = ", ".join(f"{g} {n}" for g, n in sorted(report.genres.items(), key=lambda kv: -kv[1]))
    return Outcome({**report.to_dict(), "out": str(args.out)},
                   f"wrote {args.out}: {report.tracks} tracks ({genres or 'no genre yet'})"
                   + (f"; {report.marked} marked" if report.marked else ""))
