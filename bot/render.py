"""Replies as Discord shows them: embeds for each report, and the genre bar chart as a PNG.

Pure functions of core's report objects. The chart uses matplotlib's object API on the Agg canvas (no
pyplot global state), so the cogs can render in a worker thread while the event loop keeps serving.
"""
from __future__ import annotations

import io
from pathlib import PurePath
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import discord
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bot.text import code, percent, safe
from core.genre import clock

ACCENT = discord.Colour(0x5865F2)
WARN = discord.Colour(0xED4245)
CHART_FILENAME = "genre.png"
MAP_FILENAME = "library-map.png"


CHART_INK = "#8C93A0"
"""Axis, label and tick colour of the chart: a grey readable on Discord's light (#FFFFFF) and dark (#313338)
themes alike (contrast 3.1:1 and 4.1:1), since the chart's background is transparent."""
CHART_BAR = "#7983F5"
"""Discord's blurple lightened until it stands out on both themes too (about 3.3:1 and 3.8:1)."""


def genre_chart(top: Sequence[tuple[str, float]]) -> bytes:
    """Horizontal bars of the top genres (best on top) with their probabilities, as PNG bytes with a
    transparent background, so the chart sits in the member's theme instead of a white box on a dark one."""
    names = [g for g, _ in top][::-1]
    values = [100 * p for _, p in top][::-1]
    fig = Figure(figsize=(6, 0.6 + 0.55 * max(1, len(top))), dpi=100)
    FigureCanvasAgg(fig)
    fig.patch.set_alpha(0.0)
    ax = fig.add_subplot()
    ax.set_facecolor("none")
    bars = ax.barh(names, values, color=CHART_BAR)
    ax.bar_label(bars, labels=[f"{v:.0f} %" for v in values], padding=4, color=CHART_INK)
    ax.set_xlim(0, 110)
    ax.set_xlabel("probability (%)", color=CHART_INK)
    ax.tick_params(colors=CHART_INK)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("bottom", "left"):
        ax.spines[side].set_color(CHART_INK)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", transparent=True)
    return out.getvalue()


URL_SAFE = ":/?#@!$&'+,;=%-._~"
"""Characters a shown link keeps as they are; the rest (brackets, parentheses, asterisks, pipes...) are
percent-encoded so that a link from a search result cannot close or open markdown around it."""


def shown_url(url: str) -> str:
    return quote(url, safe=URL_SAFE)


def resolved_text(resolved: Mapping[str, Any]) -> str:
    """For a streaming service's link: what was analysed instead, and its link (core.resolve.Resolved)."""
    return (f"analysed *{safe(resolved['artist'], 60)} – {safe(resolved['title'], 80)}* from "
            f"{safe(resolved['source'], 40)}, found by {safe(resolved['found_by'], 40)}\n"
            f"{shown_url(resolved['source_url'])}")


def _with_resolved(embed: discord.Embed, resolved: Mapping[str, Any] | None) -> discord.Embed:
    if resolved:
        embed.description = f"{resolved_text(resolved)}\n{embed.description or ''}".rstrip()
        embed.url = shown_url(resolved["source_url"])
    return embed


def genre_embed(report: Any) -> discord.Embed:
    """Top genre, confidence, the top-3 list, segments analysed; the chart is attached as CHART_FILENAME.
    For a streaming service's link, the first line says which recording was analysed, and where."""
    what = f"link {code(report.title, 80)}" if report.title else f"file {code(report.file, 80)}"
    embed = discord.Embed(
        title=f"🎧 {report.verdict[:1].upper()}{report.verdict[1:]}", colour=ACCENT,
        description=(f"too close to call: **{percent(report.top[0][1])}** {report.top[0][0]}, "
                     f"**{percent(report.top[1][1])}** {report.top[1][0]}" if report.close_call
                     else f"**{percent(report.confidence)}** confident") + f" · {what}")
    embed.add_field(name="Top 3", value="\n".join(f"{g} — {percent(p)}" for g, p in report.top[:3]) or "—")
    if getattr(report, "tags", None):
        embed.add_field(name="Sounds like", value=" · ".join(safe(t, 40) for t in report.tags), inline=False)
    embed.add_field(name="Analysed", value=f"{report.segments} segments of 3 s "
                                           f"({report.clip_seconds:.0f} s of audio)")
    if report.sections and len(report.sections) > 1:
        embed.add_field(name="Along the track", value=along_the_track(report.sections), inline=False)
    embed.set_image(url=f"attachment://{CHART_FILENAME}")
    embed.set_footer(text=f"model: {report.model or 'unknown'} · was this right? use the buttons below")
    return _with_resolved(embed, getattr(report, "resolved", None))


def along_the_track(sections: Sequence[Mapping[str, Any]]) -> str:
    """Every part of the track with its genre, in order, neighbours of one genre joined ("1:00–2:30 pop"),
    as many as fit in a field, then "… and N more"."""
    runs: list[list[Any]] = []
    for s in sections:
        if runs and runs[-1][2] == s["genre"]:
            runs[-1][1] = s["end"]
        else:
            runs.append([s["start"], s["end"], s["genre"]])
    return bounded_lines([f"{clock(a)}–{clock(b)} {genre}" for a, b, genre in runs])


def hits_lines(hits: Sequence[Any], *, start: int = 0, score_label: str = "") -> str:
    """Numbered tracks with their score (similarity, or how well they fit a mood: `score_label` says
    which) and the reason core gives."""
    lines = []
    for i, hit in enumerate(hits, start=start + 1):
        lines.append(f"**{i}. {safe(hit.title, 80)}** · {score_label}{percent(max(0.0, hit.score))}\n"
                     f"  ↳ {safe(hit.reason, 150)}")
    return "\n".join(lines) or "nothing found"


def similar_embed(report: Any, *, page: int, per_page: int) -> discord.Embed:
    """The page's tracks; when the query is a library track's own recording (listed first, core says so),
    the first page opens with "This is <title>, already in the library" and the rest are "sounds like"."""
    results = report.results
    pages = max(1, -(-len(results) // per_page))
    shown = results[page * per_page:(page + 1) * per_page]
    same = [h for h in shown if getattr(h, "same_recording", False)]
    others = [h for h in shown if not getattr(h, "same_recording", False)]
    parts = [f"🎯 This is **{safe(h.title, 80)}**, already in the library." for h in same]
    if others:
        parts.append(("**Sounds like**\n" if same else "") + hits_lines(others, start=page * per_page + len(same)))
    embed = discord.Embed(title=f"Tracks like {safe(report.query, 80)}", colour=ACCENT,
                          description="\n\n".join(parts) or "nothing found")
    embed.set_footer(text=f"page {page + 1}/{pages} · rate a track to tune your recommendations")
    return _with_resolved(embed, getattr(report, "resolved", None))


def recommend_embed(hits: Sequence[Any], mood: str) -> discord.Embed:
    embed = discord.Embed(title=f"Picked for a {mood} mood", colour=ACCENT,
                          description=hits_lines(hits, score_label=f"fits {mood} "))
    embed.set_footer(text="rate a track below: your ratings change what you get next time")
    return embed


def history_embed(items: Sequence[Any]) -> discord.Embed:
    lines = []
    for item in items:
        what = safe(item.title or item.detail, 90)
        lines.append(f"`{item.at[:16].replace('T', ' ')}` **{item.kind}** {what}")
    embed = discord.Embed(title="Your history here", colour=ACCENT,
                          description="\n".join(lines) if lines else "Nothing yet.")
    embed.set_footer(text="only you can see this · /forget-me deletes it")
    return embed


STATS_LABELS = {"tracks": "Tracks", "ready": "Ready", "pending": "Waiting for a reindex", "failed": "Failed",
                "indexed": "Searchable"}
"""The stats an admin reads, in plain words (the models' version string is for `--json`, not for people)."""


def stats_embed(stats: Mapping[str, Any]) -> discord.Embed:
    embed = discord.Embed(title="Library", colour=ACCENT)
    for key, label in STATS_LABELS.items():
        embed.add_field(name=label, value=str(stats.get(key, 0)))
    embed.set_footer(text="/library reindex analyses the tracks waiting, and those the current models "
                          "have not analysed yet")
    return embed


def map_embed(report: Any) -> discord.Embed:
    """The library map (attached as MAP_FILENAME): how many tracks, the biggest genres, the marked clip."""
    genres = sorted(report.genres.items(), key=lambda kv: -kv[1])[:5]
    described = ", ".join(f"{g} {n}" for g, n in genres) or "no genres yet"
    embed = discord.Embed(title="🗺️ This server's library", colour=ACCENT,
                          description=f"{report.tracks} tracks · {described}")
    if report.marked:
        embed.add_field(name="★", value=f"where `{safe(report.marked, 80)}` falls")
    embed.set_image(url=f"attachment://{MAP_FILENAME}")
    embed.set_footer(text="each dot is a track; close dots sound alike")
    return embed


FIELD_LIMIT = 1024
"""Discord refuses an embed field value longer than this (the whole message, not just the field)."""


def bounded_lines(lines: Sequence[str], *, total: int | None = None, budget: int = FIELD_LIMIT) -> str:
    """As many of `lines` as fit in `budget` characters, then "… and N more" for the rest of `total` items
    (default: one item a line)."""
    total = len(lines) if total is None else total
    shown: list[str] = []
    for line in lines:
        left = total - len(shown) - 1
        tail = len(f"\n… and {left} more") if left else 0
        if len("\n".join([*shown, line])) + tail > budget:
            break
        shown.append(line)
    if total > len(shown):
        shown.append(f"… and {total - len(shown)} more")
    return "\n".join(shown)


def failures_text(failed: Sequence[tuple[str, str]], limit: int = 5, *, details: bool = True) -> str:
    """Each failure's source and reason; without `details` (a message in a public channel), only a note:
    sources are library file paths and links an admin added, for admins' eyes."""
    if not details:
        return "The reasons are not listed in a public channel."
    return bounded_lines([f"• {safe(shown_source(source), 60)}: {safe(reason, 150)}"
                          for source, reason in failed[:limit]], total=len(failed))


def shown_source(source: str) -> str:
    """A failure's source as an admin's message shows it: a link as it is, a file of the server by its name
    only (the bot's absolute paths say how the server is laid out, which is nobody's business on Discord)."""
    if "://" in source[:16] or source.startswith("upload:"):
        return source
    return PurePath(source).name or source


def add_embed(report: Any, playlist_limit: int, *, details: bool = True) -> discord.Embed:
    """What was added, what was there already, what failed and why, and what a playlist's limit left out."""
    embed = discord.Embed(title="Library add", colour=WARN if report.failed and not report.added else ACCENT)
    added = bounded_lines([f"• #{a.track_id} {safe(a.title, 80)}" for a in report.added[:10]],
                          total=len(report.added)) or "none"
    embed.add_field(name=f"Added ({len(report.added)})", value=added, inline=False)
    if report.already_there:
        same = bounded_lines([f"• *{safe(a.title, 80)}* is already in the library (#{a.track_id})"
                              for a in report.already_there[:10]], total=len(report.already_there))
        embed.add_field(name=f"Already there ({len(report.duplicates) + len(report.already_there)})",
                        value=same, inline=False)
    elif report.duplicates:
        embed.add_field(name="Already there", value=str(len(report.duplicates)))
    if report.failed:
        embed.add_field(name=f"Failed ({len(report.failed)})",
                        value=failures_text(report.failed, details=details), inline=False)
    if report.left_out:
        count = f"{'at least ' if report.left_out_is_minimum else ''}{report.left_out}"
        embed.add_field(name=f"Left out ({count})", inline=False,
                        value=f"At most {playlist_limit} playlist entries are downloaded per add; add the "
                              "same link again to continue with the ones not in the library yet.")
    return embed


def reindex_embed(report: Any, *, details: bool = True) -> discord.Embed:
    embed = discord.Embed(title="Reindex finished", colour=ACCENT)
    embed.add_field(name="analysed", value=str(report.analysed))
    embed.add_field(name="unchanged", value=str(report.skipped))
    embed.add_field(name="in the index", value=str(report.index_size))
    embed.add_field(name="time", value=f"{report.seconds:.1f} s")
    if report.failed:
        embed.add_field(name=f"failed ({len(report.failed)})",
                        value=failures_text(report.failed, details=details), inline=False)
    return embed


def progress_bar(done: int, total: int, width: int = 20) -> str:
    filled = round(width * done / total) if total else width
    return f"`{'█' * filled}{'░' * (width - filled)}` {done}/{total}"
