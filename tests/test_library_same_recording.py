"""The same song added twice (by upload and by link, or uploaded twice, re-encoded) is one track: the second
is analysed, recognised by its audio fingerprint as a recording the library already has, and not added;
the admin is told "<title> is already in the library". A genuinely different track is still added.

Real audio (the bundled demo clips, re-encoded with the bundled ffmpeg), real analysis, a real SQLite file:
the command line in its own processes, and the real bot on the local Discord server for an upload."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from core.audio import decode
from core.cli.demo import DEMO_CLIPS
from tests.audio_files import write_audio
from tests.bot_world import bot_with_library
from tests.processes import process_env, start

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

ORIGINAL, OTHER, THIRD = (DEMO_CLIPS / n for n in ("supertux-chipdisko.ogg", "etr-race1.ogg",
                                                   "xmoto-speeditup.ogg"))


def reencoded(source: Path, target: Path) -> Path:
    """The whole recording decoded and encoded again (mp3 or opus, by `target`'s extension)."""
    return write_audio(target, decode(source, max_seconds=600))


async def cratedigger(env: dict[str, str], log: Path, *args: str) -> tuple[int, str]:
    cli = start(list(args), env, log)
    code = await asyncio.to_thread(cli.popen.wait, 600)
    return code, cli.text()


async def test_the_command_line_names_the_track_already_there_and_adds_only_new_ones(tmp_path: Path) -> None:
    env = process_env(CRATEDIGGER_DATA_DIR=tmp_path / "data", CRATEDIGGER_WORKERS=1)
    code, out = await cratedigger(env, tmp_path / "first.log", "library", "add", str(ORIGINAL), str(OTHER),
                                  "--json")
    assert code == 0, out
    first = json.loads(out.splitlines()[-1])
    titles = {Path(a["source"]).name: (a["track_id"], a["title"]) for a in first["added"]}
    assert len(titles) == 2

    copy = reencoded(ORIGINAL, tmp_path / "chipdisko from a link.mp3")
    code, out = await cratedigger(env, tmp_path / "copy.log", "library", "add", str(copy))
    track_id, title = titles[ORIGINAL.name]
    assert code == 0, out
    assert "added 0 track(s), 1 already there, 0 failed" in out
    assert f"= {copy.resolve()}: {title} is already in the library (track {track_id})" in out

    # In one add, a new track and a copy of it: the copy is recognised against the track taken just before.
    third_copy = reencoded(THIRD, tmp_path / "speeditup again.opus")
    code, out = await cratedigger(env, tmp_path / "batch.log", "library", "add", str(THIRD), str(third_copy),
                                  "--json")
    assert code == 0, out
    batch = json.loads(out.splitlines()[-1])
    [added] = batch["added"]
    assert Path(added["source"]).name == THIRD.name
    assert batch["already_there"] == [{"source": str(third_copy.resolve()), "track_id": added["track_id"],
                                       "title": added["title"]}]

    code, out = await cratedigger(env, tmp_path / "stats.log", "library", "stats", "--json")
    stats = json.loads(out.splitlines()[-1])
    assert (stats["tracks"], stats["ready"], stats["indexed"]) == (3, 3, 3)  # no copy kept, pending or not


async def test_an_upload_of_a_song_already_there_is_named_in_discord_and_not_kept(tmp_path: Path) -> None:
    copy = reencoded(ORIGINAL, tmp_path / "my upload.mp3")
    async with bot_with_library(tmp_path, 0) as (server, guild, bot):
        report = await bot.service.add_to_library(guild.id, [ORIGINAL])
        [original] = report.added
        admin = guild.members[server.owner.id]
        ix = await server.slash(admin, "library add", file=server.attachment("my upload.mp3", copy.read_bytes()))
        await server.wait_for(lambda: bool(ix.refused) or bool(ix.messages) and bool(ix.last().embeds),
                              timeout=300)
        text = ix.last().text()
        assert "Added (0)" in text, text
        assert f"*{original.title}* is already in the library (#{original.track_id})" in text, text
        assert (await bot.service.library_stats(guild.id))["tracks"] == 1
        stored = bot.settings.data_dir / "audio" / f"guild-{guild.id}"
        assert not stored.exists() or list(stored.iterdir()) == []  # the upload's copy is not kept

        other = await server.slash(admin, "library add",
                                   file=server.attachment("another song.ogg", OTHER.read_bytes()))
        await server.wait_for(lambda: bool(other.messages) and bool(other.last().embeds), timeout=300)
        assert "Added (1)" in other.last().text() and "already in the library" not in other.last().text()
        assert (await bot.service.library_stats(guild.id))["tracks"] == 2
