"""core.fetch and core.netguard against a real local HTTP server, real yt-dlp and real ffmpeg.

Nothing here connects anywhere but 127.0.0.1: private and link-local addresses are refused before any
connection is attempted, and the one "public" address (in the DNS-rebinding test) is routed by the
test's connector to the local server.
"""
from __future__ import annotations

import io
import ipaddress
import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import soundfile as sf

from core.audio import decode, ffmpeg_exe
from core.config import Settings
from core.errors import FetchFailed, FetchRefused, PlaylistLink, TooLarge, TooLong
from core.fetch import FetchedAudio, fetch_audio
from core.netguard import (
    GuardProxy,
    check_url,
    is_allowlisted,
    is_public,
    literal_address,
    resolve_checked,
)
from tests.conftest import synth_tone

if TYPE_CHECKING:
    from tests.http_fixture import LocalHTTPServer

    ServerFactory = Callable[[], LocalHTTPServer]


SR = 22_050
PUBLIC_STAND_IN = ipaddress.ip_address("93.184.215.14")
"""A public address the rebinding test pretends a name resolves to; its connector never dials it."""


def encode(seconds: float, fmt: str) -> bytes:
    y = synth_tone(seconds, sr=SR)
    if fmt == "mp3":
        proc = subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-f", "f32le", "-ar", str(SR), "-ac", "1", "-i", "pipe:0",
             "-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3", "pipe:1"],
            input=y.tobytes(), capture_output=True, check=True)
        return proc.stdout
    buffer = io.BytesIO()
    sf.write(buffer, y, SR, format=fmt.upper())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tone_wav() -> bytes:
    return encode(5.0, "wav")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", fetch_allow_hosts=("127.0.0.1",), link_analyse_seconds=4.0,
                    max_download_mb=2.0, max_download_seconds=20.0, max_clip_seconds=600.0)


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """The fetch work folder; every test ends with it empty, whatever happened."""
    path = tmp_path / "work"
    yield path
    leftovers = sorted(p.relative_to(path) for p in path.rglob("*")) if path.exists() else []
    assert leftovers == [], f"fetch left files behind: {leftovers}"


def fetch(url: str, settings: Settings, workdir: Path, **seams: object) -> FetchedAudio:
    """Fetch and check the file while the job is open; return the (now deleted) result."""
    with fetch_audio(url, settings, workdir, **seams) as fetched:  # type: ignore[arg-type]
        assert fetched.path.is_file() and fetched.path.is_relative_to(workdir)
        y = decode(fetched.path, max_seconds=settings.max_clip_seconds)
        assert y.size / SR == pytest.approx(fetched.seconds, abs=0.05)
        assert float(np.max(np.abs(y))) > 0.05
    assert not fetched.path.exists()
    return fetched


# -- the happy paths -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["wav", "ogg", "flac", "mp3"])
def test_downloads_a_direct_audio_file(fmt: str, http_server: LocalHTTPServer, settings: Settings,
                                       workdir: Path) -> None:
    url = http_server.add_file(f"song.{fmt}", encode(3.0, fmt), f"audio/{fmt}")
    fetched = fetch(url, settings, workdir)
    assert fetched.title == "song"
    assert fetched.duration == pytest.approx(3.0, abs=0.15)
    assert fetched.seconds == pytest.approx(3.0, abs=0.15)
    assert fetched.source_url == url and fetched.webpage_url == url
    assert fetched.extractor == "generic"


def test_follows_an_allowed_redirect(http_server: LocalHTTPServer, settings: Settings, workdir: Path,
                                     tone_wav: bytes) -> None:
    target = http_server.add_file("files/tone.wav", tone_wav, "audio/wav")
    url = http_server.add_redirect("go", target)
    fetched = fetch(url, settings, workdir)
    assert fetched.duration == pytest.approx(5.0, abs=0.05)
    assert "/files/tone.wav" in http_server.paths_requested()


def test_a_long_direct_file_is_cut_to_the_analysis_window(http_server: LocalHTTPServer, settings: Settings,
                                                           workdir: Path) -> None:
    url = http_server.add_file("long.wav", encode(9.0, "wav"), "audio/wav")
    fetched = fetch(url, settings, workdir)
    assert fetched.duration == pytest.approx(9.0, abs=0.05)
    assert fetched.seconds == pytest.approx(settings.link_analyse_seconds, abs=0.05)


def test_a_direct_file_longer_than_the_clip_cap_is_refused(http_server: LocalHTTPServer, settings: Settings,
                                                            workdir: Path) -> None:
    url = http_server.add_file("long.wav", encode(9.0, "wav"), "audio/wav")
    with pytest.raises(TooLong, match="longer than"):
        fetch(url, settings.with_overrides(max_clip_seconds=6.0), workdir)


def json_ld_page(server: LocalHTTPServer, audio_url: str, *, duration: str) -> str:
    data = {"@context": "https://schema.org", "@type": "AudioObject", "name": "Night Drive",
            "byArtist": {"@type": "MusicGroup", "name": "The Synths"}, "contentUrl": audio_url,
            "encodingFormat": "audio/wav", "duration": duration}
    return server.add_page("track.html", "<html><head><title>t</title><script type=\"application/ld+json\">"
                                         f"{json.dumps(data)}</script></head><body>hi</body></html>")


def test_a_track_whose_length_the_site_reports_is_downloaded_by_yt_dlp_and_cut_here(
        http_server: LocalHTTPServer, settings: Settings, workdir: Path) -> None:
    audio = http_server.add_file("night.wav", encode(10.0, "wav"), "audio/wav")
    page = json_ld_page(http_server, audio, duration="PT2M")
    fetched = fetch(page, settings, workdir)
    assert fetched.duration == pytest.approx(10.0, abs=0.05)  # what was downloaded, not what the site said
    assert fetched.seconds == pytest.approx(settings.link_analyse_seconds, abs=0.1)
    assert (fetched.title, fetched.artist) == ("Night Drive", "The Synths")
    assert fetched.webpage_url == page
    audio_requests = [h for _m, p, h in http_server.requests if p == "/night.wav"]
    assert audio_requests and not any("Icy-MetaData" in h for h in audio_requests)  # not fetched by ffmpeg


def test_a_site_reported_length_over_the_clip_cap_is_refused_before_download(
        http_server: LocalHTTPServer, settings: Settings, workdir: Path) -> None:
    audio = http_server.add_file("night.wav", encode(1.0, "wav"), "audio/wav")
    page = json_ld_page(http_server, audio, duration="PT30M")
    with pytest.raises(TooLong):
        fetch(page, settings, workdir)
    assert "/night.wav" not in http_server.paths_requested()


def hls_vod(server: LocalHTTPServer, tmp_path: Path, seconds: float, *, live: bool = False) -> str:
    out = tmp_path / "hls"
    out.mkdir()
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "f32le", "-ar", str(SR), "-ac", "1", "-i", "pipe:0",
                    "-c:a", "aac", "-b:a", "64k", "-f", "hls", "-hls_time", "2", "-hls_list_size", "0",
                    "-hls_segment_filename", str(out / "seg%02d.ts"), str(out / "index.m3u8")],
                   input=synth_tone(seconds, sr=SR).tobytes(), check=True, capture_output=True)
    for segment in sorted(out.glob("*.ts")):
        server.add_file(f"hls/{segment.name}", segment.read_bytes(), "video/mp2t")
    playlist = (out / "index.m3u8").read_text()
    if live:
        playlist = playlist.replace("#EXT-X-ENDLIST", "").replace("#EXT-X-PLAYLIST-TYPE:VOD", "")
    return server.add_file("hls/index.m3u8", playlist.encode(), "application/vnd.apple.mpegurl")


def test_an_hls_stream_is_fetched_by_yt_dlp_through_the_guard(http_server: LocalHTTPServer,
                                                               settings: Settings, workdir: Path,
                                                               tmp_path: Path) -> None:
    url = hls_vod(http_server, tmp_path, 10.0)
    fetched = fetch(url, settings, workdir)
    assert fetched.duration == pytest.approx(10.0, abs=0.5)
    assert fetched.seconds == pytest.approx(settings.link_analyse_seconds, abs=0.1)
    segments = [h for _m, p, h in http_server.requests if p.endswith(".ts")]
    assert segments and not any("Icy-MetaData" in h for h in segments)  # not fetched by ffmpeg


# -- what is refused, and why ----------------------------------------------------------------------------

def test_a_missing_file_is_a_fetch_failure(http_server: LocalHTTPServer, settings: Settings,
                                           workdir: Path) -> None:
    with pytest.raises(FetchFailed, match="404"):
        fetch(http_server.url("nothing-here.wav"), settings, workdir)


def test_a_port_where_nothing_listens_is_unreachable_not_a_site_error(settings: Settings,
                                                                        workdir: Path) -> None:
    """The guard could not connect, so no site answered: its own 502 must not read as the site's error."""
    with socket.socket() as probe:  # a port that was free a moment ago and that nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FetchFailed) as refused:
        fetch(f"http://127.0.0.1:{port}/song.mp3", settings, workdir)
    assert str(refused.value) == "Could not reach the site: nothing answered at that address; check the link."


@pytest.mark.parametrize("send_length", [True, False], ids=["content-length", "no-length"])
def test_a_file_over_the_size_cap_is_refused_and_removed(send_length: bool, http_server: LocalHTTPServer,
                                                         settings: Settings, workdir: Path) -> None:
    big = encode(60.0, "wav")  # 2.6 MB > 2 MB
    url = http_server.add_file("big.wav", big, "audio/wav", send_length=send_length)
    with pytest.raises(TooLarge, match="2 MB"):
        fetch(url, settings, workdir)


def test_an_endless_response_is_cut_by_the_byte_budget(http_server: LocalHTTPServer, settings: Settings,
                                                       workdir: Path) -> None:
    url = http_server.add_file("endless.wav", encode(1.0, "wav"), "audio/wav", send_length=False,
                               repeat=100_000)
    with pytest.raises(TooLarge):
        fetch(url, settings.with_overrides(max_download_mb=0.5), workdir)


def test_a_slow_server_hits_the_time_cap(http_server: LocalHTTPServer, settings: Settings,
                                         workdir: Path) -> None:
    url = http_server.add_file("slow.wav", encode(5.0, "wav"), "audio/wav", drip_seconds=1.0)
    with pytest.raises(FetchFailed, match="longer than 2 s"):
        fetch(url, settings.with_overrides(max_download_seconds=2.0), workdir)


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "FILE:///etc/passwd", "ftp://example.com/song.mp3", "gopher://example.com/",
    "javascript:alert(1)", "example.com/song.mp3", "", "http://", "http://exa mple.com/",
    "http://user:secret@example.com/song.mp3", "http://example.com:99999/",
    "HTTP://\x80", "http://a..b/", f"http://{'a' * 64}.example.com/",  # hosts with no DNS spelling
])
def test_links_that_are_not_plain_web_addresses_are_refused(url: str, settings: Settings,
                                                            workdir: Path) -> None:
    with pytest.raises(FetchRefused):
        fetch(url, settings, workdir)


@pytest.mark.parametrize("host", [
    "127.0.0.1", "localhost", "LocalHost.", "app.localhost", "[::1]", "2130706433", "0x7f000001", "0x7f.1",
    "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]", "0.0.0.0", "10.0.0.1", "172.16.0.1", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "[fe80::1]", "[fd00::1]", "224.0.0.1", "[ff02::1]", "240.0.0.1",
])
def test_private_and_local_addresses_are_refused_without_the_allowlist(
        host: str, http_server: LocalHTTPServer, settings: Settings, workdir: Path, tone_wav: bytes) -> None:
    http_server.add_file("tone.wav", tone_wav, "audio/wav")
    url = f"http://{host}:{http_server.port}/tone.wav"
    with pytest.raises(FetchRefused, match="private or local network"):
        fetch(url, settings.with_overrides(fetch_allow_hosts=()), workdir)
    assert http_server.requests == []


@pytest.mark.parametrize("target", [
    "http://localhost:{port}/tone.wav", "http://127.0.0.1:{port}/tone.wav",
    "http://2130706433:{port}/tone.wav",
    "http://[::1]:{port}/tone.wav", "http://10.0.0.1/tone.wav", "http://169.254.169.254/latest/meta-data/",
    "https://127.0.0.1:{port}/tone.wav",
])
def test_a_redirect_to_a_refused_address_is_stopped_at_connection_time(
        target: str, http_server_factory: ServerFactory, settings: Settings, workdir: Path,
        tone_wav: bytes) -> None:
    allowed, other = http_server_factory(), http_server_factory()
    other.add_file("tone.wav", tone_wav, "audio/wav")
    url = allowed.add_redirect("go.wav", target.format(port=other.port))
    only_first = settings.with_overrides(fetch_allow_hosts=(allowed.netloc,))
    check_url(url, only_first)  # the pre-check passes: only the hop can be refused
    with pytest.raises(FetchRefused, match="private or local network"):
        fetch(url, only_first, workdir)
    assert allowed.paths_requested() and other.requests == []


@pytest.mark.parametrize("no_proxy", [None, "127.0.0.1,localhost"])
def test_the_media_of_a_page_cannot_bypass_the_guard(
        no_proxy: str | None, http_server_factory: ServerFactory, settings: Settings, workdir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    if no_proxy:
        monkeypatch.setenv("no_proxy", no_proxy)
    page_server, audio_server = http_server_factory(), http_server_factory()
    audio = audio_server.add_file("night.wav", encode(10.0, "wav"), "audio/wav")
    page = json_ld_page(page_server, audio, duration="PT2M")
    with pytest.raises(FetchRefused, match="private or local network"):
        fetch(page, settings.with_overrides(fetch_allow_hosts=(page_server.netloc,)), workdir)
    assert audio_server.requests == []


class RebindingDNS:
    """A name that answers a public address first and loopback afterwards (a DNS-rebinding attack).
    The connector routes the public stand-in to the local server and records every address dialled."""

    def __init__(self, server: LocalHTTPServer, answers: list[str]) -> None:
        self.server, self.answers, self.dialled = server, answers, []

    def resolve(self, host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        assert host == "music.test"
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [ipaddress.ip_address(answer)]

    def connect(self, address, port: int, timeout: float) -> socket.socket:
        self.dialled.append(str(address))
        assert address == PUBLIC_STAND_IN, "the guard dialled an address it should have refused"
        return socket.create_connection((self.server.host, self.server.port), timeout=timeout)


def test_dns_rebinding_between_hops_is_refused(http_server: LocalHTTPServer, settings: Settings,
                                               workdir: Path, tone_wav: bytes) -> None:
    http_server.add_file("tone.wav", tone_wav, "audio/wav")
    http_server.add_redirect("start", f"http://music.test:{http_server.port}/tone.wav")
    dns = RebindingDNS(http_server, [str(PUBLIC_STAND_IN), "127.0.0.1"])
    with pytest.raises(FetchRefused, match="private or local network"):
        fetch(f"http://music.test:{http_server.port}/start", settings.with_overrides(fetch_allow_hosts=()),
              workdir, resolver=dns.resolve, connector=dns.connect)
    assert http_server.paths_requested() == ["/start"]
    assert dns.dialled == [str(PUBLIC_STAND_IN)]


def test_a_name_that_stays_public_is_fetched(http_server: LocalHTTPServer, settings: Settings,
                                             workdir: Path, tone_wav: bytes) -> None:
    http_server.add_file("tone.wav", tone_wav, "audio/wav")
    dns = RebindingDNS(http_server, [str(PUBLIC_STAND_IN)])
    fetched = fetch(f"http://music.test:{http_server.port}/tone.wav",
                    settings.with_overrides(fetch_allow_hosts=()), workdir,
                    resolver=dns.resolve, connector=dns.connect)
    assert fetched.duration == pytest.approx(5.0, abs=0.05)
    assert set(dns.dialled) == {str(PUBLIC_STAND_IN)}


def test_a_page_of_several_tracks_is_refused_as_a_playlist(http_server: LocalHTTPServer, settings: Settings,
                                                           workdir: Path, tone_wav: bytes) -> None:
    a = http_server.add_file("a.wav", tone_wav, "audio/wav")
    b = http_server.add_file("b.wav", tone_wav, "audio/wav")
    page = http_server.add_page("album.html", "<html><head><title>Album</title></head><body>"
                                              f"<audio src=\"{a}\"></audio><audio src=\"{b}\"></audio>"
                                              "</body></html>")
    with pytest.raises(FetchRefused, match="playlist"):
        fetch(page, settings, workdir)
    assert "/a.wav" not in http_server.paths_requested()


def test_a_feed_is_refused_as_a_playlist_before_any_entry_is_fetched(http_server: LocalHTTPServer,
                                                                     settings: Settings, workdir: Path,
                                                                     tone_wav: bytes) -> None:
    """yt-dlp reads an RSS feed's enclosures as a playlist of links, which it would extract one by one."""
    feed = http_server.add_feed("feed.xml", [(name, http_server.add_file(name, tone_wav, "audio/wav"))
                                             for name in ("a.wav", "b.wav")])
    with pytest.raises(PlaylistLink, match="playlist"):
        fetch(feed, settings, workdir)
    assert http_server.paths_requested() == ["/feed.xml"]


def test_a_stream_protocol_the_guard_cannot_see_is_refused(http_server: LocalHTTPServer,
                                                           settings: Settings, workdir: Path) -> None:
    """rtmp (and rtsp, mms...) would be fetched by ffmpeg or rtmpdump directly, not through the proxy."""
    url = http_server.add_page("radio.html", "<html><head><title>Radio</title></head><body>"
                                             "<audio src=\"rtmp://127.0.0.1:1935/live/x.mp3\"></audio>"
                                             "</body></html>")
    with pytest.raises(FetchRefused, match="in a way we do not fetch"):
        fetch(url, settings, workdir)


def test_nothing_is_written_outside_the_job_folder(http_server: LocalHTTPServer, settings: Settings,
                                                   workdir: Path, tmp_path: Path, tone_wav: bytes,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir(), cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.chdir(cwd)
    fetch(http_server.add_file("tone.wav", tone_wav, "audio/wav"), settings, workdir)
    assert list(home.iterdir()) == [] and list(cwd.iterdir()) == []


def test_a_live_stream_is_refused(http_server: LocalHTTPServer, settings: Settings, workdir: Path,
                                  tmp_path: Path) -> None:
    url = hls_vod(http_server, tmp_path, 4.0, live=True)
    with pytest.raises(FetchRefused, match="live stream"):
        fetch(url, settings, workdir)
    assert not any(p.endswith(".ts") for p in http_server.paths_requested())


def test_a_page_without_media_is_refused(http_server: LocalHTTPServer, settings: Settings,
                                         workdir: Path) -> None:
    url = http_server.add_page("about.html",
                               "<html><head><title>About</title></head><body>words</body></html>")
    with pytest.raises(FetchRefused, match="not a site or file we can get audio from"):
        fetch(url, settings, workdir)


def test_a_file_that_claims_to_be_audio_but_is_not_is_refused(http_server: LocalHTTPServer,
                                                              settings: Settings, workdir: Path) -> None:
    url = http_server.add_file("fake.wav", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64, "audio/wav")
    with pytest.raises(FetchRefused, match="did not lead to audio"):
        fetch(url, settings, workdir)


# -- netguard's rules, directly --------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "public"), [
    ("8.8.8.8", True), ("93.184.215.14", True), ("2606:4700:4700::1111", True), ("::ffff:8.8.8.8", True),
    ("127.0.0.1", False), ("127.255.0.9", False), ("10.1.2.3", False), ("172.16.0.1", False),
    ("172.31.255.255", False), ("192.168.0.1", False), ("169.254.169.254", False), ("100.64.0.1", False),
    ("100.127.255.254", False), ("0.0.0.0", False), ("224.0.0.251", False), ("239.1.1.1", False),
    ("240.0.0.1", False), ("255.255.255.255", False), ("192.0.2.1", False), ("198.18.0.1", False),
    ("::1", False), ("::", False), ("fe80::1", False), ("fc00::1", False), ("fd12:3456::1", False),
    ("fec0::1", False), ("ff02::1", False), ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False),
    ("::ffff:169.254.169.254", False), ("::127.0.0.1", False), ("64:ff9b::7f00:1", False),
    ("64:ff9b::a9fe:a9fe", False), ("2002:7f00:1::1", False), ("2002:0a00:0001::1", False),
    ("2001:db8::1", False),
])
def test_is_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(("host", "expected"), [
    ("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("0x7f.1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"), ("127.1", "127.0.0.1"), ("[::1]", "::1"), ("10.0.0.1", "10.0.0.1"),
    ("example.com", None), ("deadbeef", None), ("1e100.net", None),
])
def test_literal_addresses_in_every_spelling(host: str, expected: str | None) -> None:
    address = literal_address(host)
    assert (str(address) if address else None) == expected


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "localhost", "::1",
                                  "::ffff:127.0.0.1", "0.0.0.0"])
def test_the_guard_resolves_odd_spellings_and_refuses_them(host: str) -> None:
    with pytest.raises(FetchRefused):
        resolve_checked(host, 80, ())


def test_a_name_with_any_private_answer_is_refused() -> None:
    mixed = lambda host, port: [PUBLIC_STAND_IN, ipaddress.ip_address("10.0.0.7")]  # noqa: E731
    with pytest.raises(FetchRefused):
        resolve_checked("mixed.test", 443, (), mixed)
    assert resolve_checked("mixed.test", 443, (), lambda h, p: [PUBLIC_STAND_IN]) == [PUBLIC_STAND_IN]


def test_an_unresolvable_name_is_a_fetch_failure() -> None:
    def nxdomain(host: str, port: int) -> list:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(FetchFailed, match="could not be found"):
        resolve_checked("no-such-host.test", 80, (), nxdomain)


def test_allowlist_entries_match_the_spelling_and_optionally_the_port() -> None:
    allow = ("127.0.0.1:8080", "Media.Example.", "[::1]:9000", "fd00::5")
    assert is_allowlisted("127.0.0.1", 8080, allow)
    assert not is_allowlisted("127.0.0.1", 8081, allow)
    assert not is_allowlisted("localhost", 8080, allow)
    assert is_allowlisted("media.example", 443, allow)
    assert is_allowlisted("[::1]", 9000, allow) and not is_allowlisted("::1", 9001, allow)
    assert is_allowlisted("[fd00::5]", 1234, allow)


def test_check_url_accepts_public_links_without_resolving_them(settings: Settings) -> None:
    parts = check_url("  https://music.example.org:8443/a/b.mp3?x=1  ", settings)
    assert (parts.hostname, parts.port) == ("music.example.org", 8443)
    with pytest.raises(FetchRefused, match="longer than"):
        check_url("https://example.com/" + "a" * 3000, settings)


def test_the_guard_proxy_refuses_connect_tunnels_to_private_addresses() -> None:
    """An https link is tunnelled with CONNECT; the same check applies before the tunnel opens."""
    with GuardProxy((), deadline=float("inf"), byte_budget=1 << 20) as guard:
        host, port = guard.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=60) as client:  # hang guard
            client.sendall(b"CONNECT 169.254.169.254:443 HTTP/1.1\r\nHost: 169.254.169.254:443\r\n\r\n")
            answer = client.recv(4096)
    assert answer.startswith(b"HTTP/1.1 403")
    assert guard.stats.connections == [] and len(guard.stats.refusals) == 1


def test_yt_dlp_messages_reach_the_log_as_one_line_without_control_characters(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """A site controls what yt-dlp warns about (titles, error pages): it must not forge log lines or send
    escape sequences to an operator's terminal."""
    from core.fetch import _Job, _YtDlpLog

    caplog.set_level("DEBUG", logger="core.fetch")
    forged = ("[generic] title \x1b[2J\x1b[31mred\x1b[0m\r\nINFO core.service: admin granted\u202e\x07"
              + "x" * 2000)
    _YtDlpLog(_Job(settings)).warning(forged)
    [record] = [r for r in caplog.records if r.name == "core.fetch"]
    message = record.getMessage()
    assert "\n" not in message and "\r" not in message and "\x1b" not in message and "\u202e" not in message
    assert "\\r\\nINFO core.service" in message and len(message) < 600
