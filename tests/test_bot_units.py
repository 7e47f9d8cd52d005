"""The bot's pure pieces: safe text, the shared cooldown, the chart, the error mapping, the invite."""
from __future__ import annotations

import io

import discord
import numpy as np
from discord import app_commands
from matplotlib.image import imread

from bot.app import INTENTS, invite_url
from bot.cooldown import UserCooldown
from bot.errors import Refusal, describe
from bot.render import genre_chart, genre_embed, similar_embed
from bot.text import choice_name, one_line, safe
from bot.launcher import main
from core.errors import Busy, UnsupportedAudio
from core.service import GenreReport, SimilarReport, TrackHit


def test_safe_neutralises_mentions_markdown_and_length():
    role, user = "<@&123456789012345678>", "<@123456789012345678>"
    hostile = f"@everyone {role} {user} **bold** [x](http://evil) # h\n" + "a" * 500
    out = safe(hostile, 100)
    assert "@everyone" not in out and role not in out and user not in out
    assert "**bold**" not in out and "\n" not in out
    assert len(out) <= 2 * 100
    assert one_line("a\u202eb\u200bc\x00d", 10) == "abcd"  # bidi override, zero width, NUL dropped
    assert one_line("x" * 20, 10) == "x" * 9 + "…"
    assert choice_name("   ") == "(untitled)" and len(choice_name("y" * 300)) == 100


def test_embeds_name_what_a_streaming_link_was_resolved_to_without_its_markup():
    """The service's title and artist are strangers' text: shown as text, never pinging, never markdown;
    the found link cannot open or close markdown around itself."""
    resolved = {"service": "Spotify", "artist": "@everyone <@&123456789012345678>",
                "title": "**Bold** [click](http://evil)", "duration": 200.0,
                "link": "https://open.spotify.com/track/x", "source": "YouTube",
                "found_by": "its title and length",
                "source_url": "https://www.youtube.com/watch?v=abc)[x](http://evil"}
    genre = GenreReport(file=resolved["link"], genre="rock", confidence=0.9, segments=3, clip_seconds=9.0,
                        top=[("rock", 0.9), ("pop", 0.1)], model="m", title="t", resolved=resolved)
    similar = SimilarReport("q", [TrackHit(1, "A", "s", 0.9, "r")], resolved=resolved)
    for embed in (genre_embed(genre), similar_embed(similar, page=0, per_page=5)):
        first = embed.description.splitlines()[0]
        assert first.startswith("analysed *")
        assert first.endswith("* from YouTube, found by its title and length")
        assert "@everyone" not in first and "<@&123456789012345678>" not in first and "**Bold**" not in first
        shown = embed.description.splitlines()[1]
        assert shown == "https://www.youtube.com/watch?v=abc%29%5Bx%5D%28http://evil"
        assert embed.url == embed.description.splitlines()[1]
    plain = GenreReport(file="f.wav", genre="rock", confidence=0.9, top=[("rock", 0.9)], segments=3,
                        clip_seconds=9.0, model="m")
    assert genre_embed(plain).url is None and "analysed" not in (genre_embed(plain).description or "")


def test_cooldown_is_per_user_and_expires():
    now = [100.0]
    cooldown = UserCooldown(3.0, clock=lambda: now[0])
    assert cooldown.hit(1) == 0.0
    assert cooldown.hit(1) == 3.0
    assert cooldown.hit(2) == 0.0
    now[0] += 3.0
    assert cooldown.hit(1) == 0.0


def test_genre_chart_is_a_decodable_png():
    png = genre_chart([("rock", 0.7), ("metal", 0.2), ("pop", 0.1)])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = imread(io.BytesIO(png), format="png")
    assert image.shape[0] > 50 and image.shape[1] > 200
    assert np.asarray(image).std() > 0  # not a blank canvas


def test_describe_maps_expected_errors_and_leaves_bugs_unmapped():
    wrapped = app_commands.CommandInvokeError.__new__(app_commands.CommandInvokeError)
    wrapped.__cause__ = UnsupportedAudio("'x.mp3' is not audio @everyone")
    assert describe(wrapped) == safe("'x.mp3' is not audio @everyone", 400)
    assert "try again in about 12 s" in describe(Busy("busy; try again in about 12 s.", 12.0))
    assert describe(Refusal("nope")) == "nope"
    bug = app_commands.CommandInvokeError.__new__(app_commands.CommandInvokeError)
    bug.__cause__ = ZeroDivisionError()
    assert describe(bug) is None


def test_run_and_sync_without_a_token_exit_2_with_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("DISCORD_TOKEN", "")
    monkeypatch.setenv("CRATEDIGGER_BROKER_URL", "")
    for verb, reason in ((["run"], "DISCORD_TOKEN is not set"), (["sync-commands", "--guild", "1"],
                         "DISCORD_TOKEN is not set"), (["worker"], "CRATEDIGGER_BROKER_URL is not set")):
        assert main([*verb, "--data-dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and reason in err


def test_invite_asks_for_the_right_scopes_and_minimum_permissions():
    url = invite_url(1234)
    assert "scope=bot+applications.commands" in url
    permissions = discord.Permissions(int(url.split("permissions=")[1].split("&")[0]))
    assert permissions.send_messages and permissions.attach_files and permissions.embed_links
    assert not permissions.administrator and not permissions.manage_guild
    assert INTENTS.value == discord.Intents(guilds=True).value  # no message content, no members


def test_the_admin_role_is_matched_by_id_and_by_a_name_only_while_unique(caplog):
    from types import SimpleNamespace

    from bot.checks import admin_role_id

    dj, impostor, other = (SimpleNamespace(id=i, name=n) for i, n in ((11, "DJ"), (12, "DJ"), (13, "Crew")))
    guild = SimpleNamespace(id=5, roles=[dj, other])
    assert admin_role_id(guild, "11") == 11 and admin_role_id(guild, "") is None
    caplog.set_level("WARNING")
    assert admin_role_id(guild, "DJ") == 11
    assert "set the role's id" in caplog.text
    # a member with Manage Roles makes a second "DJ": the name now trusts nobody
    assert admin_role_id(SimpleNamespace(id=5, roles=[dj, impostor, other]), "DJ") is None
    assert "names 2 roles" in caplog.text
    assert admin_role_id(SimpleNamespace(id=6, roles=[other]), "DJ") is None


def test_titles_cannot_break_their_code_span_and_embeds_show_no_server_paths():
    from types import SimpleNamespace

    from bot.render import failures_text, genre_embed
    from bot.text import code

    hostile = "a`b``c @everyone **x**\n<@&1>"
    span = code(hostile, 80)
    assert span.startswith("`") and span.endswith("`") and span.count("`") == 2 and "\n" not in span
    report = SimpleNamespace(title=hostile, file="f.mp3", verdict="rock", close_call=False, confidence=0.9,
                             top=[("rock", 0.9), ("pop", 0.1)], segments=2, clip_seconds=6.0, sections=[],
                             model="m")
    assert genre_embed(report).description.count("`") == 2
    failed = [("/srv/cratedigger/library/secret/song.ogg", "the audio file is gone: song.ogg"),
              ("https://example.com/a.mp3", "404"), ("upload:x.wav", "bad")]
    text = failures_text(failed)
    assert "/srv" not in text and "song.ogg" in text and "example.com" in text and "upload:x.wav" in text


def test_recommend_embed_shows_how_well_each_pick_fits_the_mood():
    from bot.render import recommend_embed
    from core.service import TrackHit

    hits = [TrackHit(3, "Aurora", "upload:a.ogg", 0.82, "sounds calm"),
            TrackHit(5, "Dusk", "upload:b.ogg", 0.51, "likely sounds calm; recommended to you 2 h ago, so "
                                                     "it comes later this time")]
    text = recommend_embed(hits, "calm").description
    assert "**1. Aurora** · fits calm 82 %" in text and "**2. Dusk** · fits calm 51 %" in text
    assert "so it comes later this time" in text and "-" not in text.replace("↳", "")
