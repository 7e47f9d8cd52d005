"""Playlist links with the real yt-dlp against a real local HTTP server: listing a podcast-style RSS feed
and a page of several tracks without fetching any entry, the guard on the listing, and `cratedigger
library add` of a feed (each entry checked, a limit per call, a second add continuing)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from core.cli import main
from core.config import Settings
from core.errors import FetchRefused
from core.playlist import list_playlist
from tests.conftest import wav_bytes
from tests.http_fixture import LocalHTTPServer

PRIVATE = "http://10.20.30.40/leak.wav"


@pytest.fixture
def episodes(http_server: LocalHTTPServer) -> list[str]:
    return [http_server.add_file(f"ep{i}.wav", wav_bytes(4, freq=200 + 120 * i, seed=i), "audio/wav")
            for i in range(4)]


@pytest.fixture
def settings(http_server: LocalHTTPServer, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", fetch_allow_hosts=(http_server.netloc,))


def test_a_feed_is_listed_flat_without_fetching_an_entry(http_server: LocalHTTPServer, episodes: list[str],
                                                         settings: Settings) -> None:
    feed = http_server.add_feed("feed.xml", [("One", episodes[0]), ("Secret", PRIVATE), ("Two", "/ep1.wav")])
    playlist = list_playlist(feed, settings)
    assert playlist.title == "Feed" and playlist.total == 3
    assert [(e.title, e.url) for e in playlist.entries] == [
        ("One", episodes[0]), ("Secret", PRIVATE), ("Two", http_server.url("ep1.wav"))]  # relative: resolved
    assert http_server.paths_requested() == ["/feed.xml"]


def test_listing_stops_at_the_limit_but_counts_the_rest(http_server: LocalHTTPServer, episodes: list[str],
                                                        settings: Settings) -> None:
    feed = http_server.add_feed("feed.xml", [(f"Ep {i}", url) for i, url in enumerate(episodes)])
    playlist = list_playlist(feed, settings, max_entries=2)
    assert [e.title for e in playlist.entries] == ["Ep 0", "Ep 1"] and playlist.total == 4


def test_a_page_of_audio_elements_lists_their_files(http_server: LocalHTTPServer, episodes: list[str],
                                                    settings: Settings) -> None:
    page = http_server.add_page("album.html", "<html><head><title>Album</title></head><body>"
                                              f"<audio src=\"{episodes[0]}\"></audio>"
                                              f"<audio src=\"{episodes[1]}\"></audio></body></html>")
    playlist = list_playlist(page, settings)
    assert [e.url for e in playlist.entries] == episodes[:2] and playlist.total == 2
    assert http_server.paths_requested() == ["/album.html"]


def test_a_single_track_lists_as_itself(http_server: LocalHTTPServer, episodes: list[str],
                                        settings: Settings) -> None:
    playlist = list_playlist(episodes[2], settings)
    assert [e.url for e in playlist.entries] == [episodes[2]] and playlist.total == 1


def test_the_listing_goes_through_the_guard(http_server: LocalHTTPServer, episodes: list[str],
                                            settings: Settings) -> None:
    feed = http_server.add_feed("feed.xml", [("One", episodes[0])])
    with pytest.raises(FetchRefused, match="private or local"):
        list_playlist(http_server.url("feed.xml", host="localhost"), settings)  # not the allowed spelling
    hop = http_server.add_redirect("go", feed.replace("127.0.0.1", "127.0.0.2"))
    with pytest.raises(FetchRefused, match="private or local"):
        list_playlist(hop, settings)  # a redirect to a private address, refused at connection time
    assert "/feed.xml" not in http_server.paths_requested()


# -------------------------------------------------------------------------------------------- the CLI
@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, http_server: LocalHTTPServer,
        capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """`cratedigger ARGS` in this process, with the local server allowed and at most 2 playlist entries."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRATEDIGGER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CRATEDIGGER_FETCH_ALLOW_HOSTS", http_server.netloc)
    monkeypatch.setenv("CRATEDIGGER_MAX_PLAYLIST_ENTRIES", "2")
    monkeypatch.setenv("CRATEDIGGER_WORKERS", "1")

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.slow
def test_cli_library_add_of_a_feed(cli: Callable[..., tuple[int, str, str]], http_server: LocalHTTPServer,
                                   episodes: list[str]) -> None:
    feed = http_server.add_feed("feed.xml", [("One", episodes[0]), ("Secret", PRIVATE), ("Two", episodes[1]),
                                         ("Three", episodes[2])])
    code, out, err = cli("library", "add", feed)  # the person's view: what happened, and how to go on
    assert code == 2 and err.splitlines()[-1].startswith("cratedigger: 1 of 3 items failed; first: "), err
    assert "added 2 track(s), 0 already there, 1 failed" in out and "[1] One" in out and "[2] Two" in out
    assert f"! {PRIVATE}: That link points to a private or local network address" in out
    assert "1 playlist entry left out (at most 2 are downloaded per call; add the link again" in out
    assert "/ep2.wav" not in http_server.paths_requested()  # left out by the limit: never fetched
    code, out, err = cli("library", "add", "--json", feed)
    assert code == 2, err  # the private entry is refused again: not everything given went in
    doc = json.loads(out)
    assert [a["title"] for a in doc["added"]] == ["Three"] and doc["duplicates"] == episodes[:2]
    assert doc["failed"] == [{"source": PRIVATE, "reason": "That link points to a private or local network "
                                                           "address (10.20.30.40); only public sites are "
                                                           "allowed."}]
    assert doc["left_out"] == 0 and doc["left_out_is_minimum"] is False
    assert http_server.paths_requested().count("/ep0.wav") == 2  # fetched once (2 requests), not again
