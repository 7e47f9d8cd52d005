"""The holes of issue 17, tried as an attacker would, through the service (real models, real worker
processes, real yt-dlp and ffmpeg, a real SQLite file) against servers on 127.0.0.1 only.

- ffmpeg reads only the file it is given: a DASH manifest or HLS playlist uploaded as audio, kept in a
  library folder or served by a link with an audio content type, is refused, never decoded to the local
  file it names.
- ffmpeg never talks to the network: `httpproxy://` and `tcp://` keys and segments, in an HLS stream and
  behind a page that reports a long duration (what used to take the section-cut path), reach a listener
  that must see no connection.
- Links are bounded: slow links hold only the link workers (never the default thread pool or the
  analyses), a member has one request at a time, and the link backlog answers "busy" when full.
- A failed add in one server never deletes the audio of another server's track.

No test here depends on the machine's speed: slow servers are held by events the test releases, and what
is waited for is a state (a count reaching a number), never a duration.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import pytest_asyncio

from core.audio import decode, decode_bytes, ffmpeg_exe, load_segments
from core.config import Settings
from core.errors import Busy, FetchFailed, FetchRefused, MemberBusy, UnsupportedAudio, UserError
from core.service import GenreReport, Service, Upload
from tests.audio_files import write_audio
from tests.conftest import synth_tone

if TYPE_CHECKING:
    from tests.http_fixture import LocalHTTPServer

on_loop = pytest.mark.asyncio(loop_scope="module")
SR = 22_050
GUILD, OTHER_GUILD = 71, 72
ALICE, BOB, CAROL, DAVE, ERIN = 201, 202, 203, 204, 205


# -- what the attacker uses ------------------------------------------------------------------------------

def encode(seconds: float, path: Path, *args: str) -> Path:
    """A tone encoded by ffmpeg into `path` (its container from the extension, codec options in `args`)."""
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "f32le", "-ar", str(SR), "-ac", "1", "-i", "pipe:0",
                    *args, "-y", str(path)], input=synth_tone(seconds, sr=SR).tobytes(), check=True,
                   capture_output=True)
    return path


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Local audio files the attacker wants read: as another server's stored audio would be."""
    folder = tmp_path_factory.mktemp("private")
    return {"m4a": encode(8.0, folder / "secret.m4a", "-c:a", "aac", "-b:a", "64k"),
            "mp3": encode(8.0, folder / "secret.mp3", "-c:a", "libmp3lame", "-b:a", "64k")}


def dash_manifest(target: Path) -> bytes:
    """An MPD whose BaseURL names a local file (ffmpeg's dash demuxer opens m4a, mp4, webm... by path)."""
    return ("<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"static\" "
            "mediaPresentationDuration=\"PT8S\" minBufferTime=\"PT1S\" "
            "profiles=\"urn:mpeg:dash:profile:isoff-on-demand:2011\"><Period><AdaptationSet "
            "mimeType=\"audio/mp4\"><Representation id=\"a\" bandwidth=\"64000\" codecs=\"mp4a.40.2\" "
            f"audioSamplingRate=\"{SR}\"><BaseURL>{target}</BaseURL></Representation></AdaptationSet>"
            "</Period></MPD>\n").encode()


def hls_playlist(target: Path) -> bytes:
    return (f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:8\n#EXTINF:8.0,\n{target}\n"
            "#EXT-X-ENDLIST\n").encode()


def manifests(secrets: dict[str, Path]) -> dict[str, bytes]:
    return {"dash": dash_manifest(secrets["m4a"]), "hls": hls_playlist(secrets["mp3"])}


class Tripwire:
    """A listener on a loopback port that nothing may reach: it records every connection made to it."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self.port = int(self._socket.getsockname()[1])
        self.connections: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._socket.accept()
            except TimeoutError:
                continue
            client.settimeout(1.0)
            try:
                self.connections.append(client.recv(4096))
            except OSError:
                self.connections.append(b"")
            client.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()


@pytest.fixture
def tripwire() -> Iterator[Tripwire]:
    wire = Tripwire()
    yield wire
    wire.close()


def hls_segments(server: LocalHTTPServer, tmp_path: Path) -> list[str]:
    """Three 2-s MPEG-TS segments of a tone, served by `server`; their URLs."""
    out = tmp_path / "hls"
    out.mkdir()
    encode(6.0, out / "index.m3u8", "-c:a", "aac", "-b:a", "64k", "-f", "hls", "-hls_time", "2",
           "-hls_list_size", "0", "-hls_segment_filename", str(out / "seg%02d.ts"))
    return [server.add_file(f"hls/{p.name}", p.read_bytes(), "video/mp2t") for p in sorted(out.glob("*.ts"))]


def media_playlist(segments: list[str], *, key: str = "") -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-PLAYLIST-TYPE:VOD"]
    if key:
        lines.append(key)
    for url in segments:
        lines += ["#EXTINF:2.0,", url]
    return ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode()


def long_track_page(server: LocalHTTPServer, media_url: str) -> str:
    """A page whose JSON-LD reports a 2-minute track: the section-cut path, where yt-dlp used to hand the
    media URL to ffmpeg."""
    data = {"@context": "https://schema.org", "@type": "AudioObject", "name": "Long One",
            "contentUrl": media_url, "encodingFormat": "application/vnd.apple.mpegurl", "duration": "PT2M"}
    return server.add_page("long.html", "<html><head><title>t</title><script type=\"application/ld+json\">"
                                        f"{json.dumps(data)}</script></head><body>x</body></html>")


# -- the service ----------------------------------------------------------------------------------------

@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    data = tmp_path_factory.mktemp("data")
    svc = await Service.open(Settings(data_dir=data, workers=1, queue_size=8, fetch_workers=2,
                                      fetch_queue_size=1, fetch_allow_hosts=("127.0.0.1",),
                                      link_analyse_seconds=6.0, max_download_mb=4.0,
                                      max_download_seconds=300.0))
    yield svc
    await svc.close()


def staged_nothing(service: Service) -> bool:
    staging = service.settings.data_dir / "tmp"
    return not staging.exists() or not any(staging.iterdir())


# -- 1. ffmpeg reads only the file it is given ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["dash", "hls"])
@pytest.mark.parametrize("name", ["track.mp3", "track.mka", "track.wav", "track.flac", "track.m4a"])
@on_loop
async def test_a_manifest_uploaded_as_audio_is_refused_not_decoded(
        service: Service, secrets: dict[str, Path], kind: str, name: str) -> None:
    body = manifests(secrets)[kind]
    with pytest.raises(UnsupportedAudio, match="not audio we can decode"):
        await service.classify(Upload(name, body), guild_id=GUILD, user_id=ALICE)
    assert staged_nothing(service)


@pytest.mark.parametrize("kind", ["dash", "hls"])
@pytest.mark.parametrize("name", ["track.mp3", "track.mka", "track.wav", "track.flac"])
def test_every_decoder_entry_refuses_a_manifest(secrets: dict[str, Path], tmp_path: Path, kind: str,
                                                name: str) -> None:
    """decode_bytes (uploads), decode and load_segments (library files, both the whole-file and the
    sectioned paths); libsndfile, tried first, reads only the file itself and refuses these."""
    body = manifests(secrets)[kind]
    with pytest.raises(UnsupportedAudio):
        decode_bytes(body, name, max_seconds=600)
    path = tmp_path / name
    path.write_bytes(body)
    with pytest.raises(UnsupportedAudio):
        decode(path, max_seconds=600)
    with pytest.raises(UnsupportedAudio):
        load_segments(path, max_seconds=600, max_segments=1)


@on_loop
async def test_a_manifest_in_a_library_folder_is_reported_and_not_added(
        service: Service, secrets: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    (folder / "innocent.mp3").write_bytes(dash_manifest(secrets["m4a"]))
    (folder / "innocent.mka").write_bytes(hls_playlist(secrets["mp3"]))
    report = await service.add_to_library(GUILD, [folder], added_by=ALICE)
    assert report.added == [] and len(report.failed) == 2
    assert all("not audio we can decode" in reason for _source, reason in report.failed)
    assert not any(row.source.startswith(str(folder.resolve())) for row in await service.store.tracks(GUILD))


@pytest.mark.parametrize(("path", "content_type", "kind"), [
    ("track.m4a", "audio/mp4", "dash"), ("stream.mpd.mp3", "audio/mpeg", "dash"),
    ("list.m3u", "audio/mpeg", "hls"), ("list.mp3", "audio/mpeg", "hls"),
    ("list.m3u", "audio/x-mpegurl", "hls"),
])
@on_loop
async def test_a_manifest_behind_a_link_is_refused_not_analysed(
        service: Service, secrets: dict[str, Path], http_server: LocalHTTPServer, path: str,
        content_type: str, kind: str) -> None:
    url = http_server.add_file(path, manifests(secrets)[kind], content_type)
    with pytest.raises(UserError) as refused:
        await service.classify(url, guild_id=GUILD, user_id=ALICE)
    assert isinstance(refused.value, FetchRefused | FetchFailed) and "\n" not in str(refused.value)
    assert staged_nothing(service)


def test_the_demuxer_allow_list_still_reads_real_audio(tmp_path: Path) -> None:
    """Every container the upload allow-list names still decodes, misnamed ones too (a real mp3 named
    .m4a is still an audio container ffmpeg may probe)."""
    y = synth_tone(4.0, sr=SR)
    made = [write_audio(tmp_path / f"t.{ext}", y) for ext in ("wav", "flac", "ogg", "mp3")]
    made += [encode(4.0, tmp_path / "t.m4a", "-c:a", "aac"),
             encode(4.0, tmp_path / "t.webm", "-c:a", "libopus"),
             encode(4.0, tmp_path / "t.mka", "-c:a", "libopus"),
             encode(4.0, tmp_path / "t.wma", "-c:a", "wmav2"),
             encode(4.0, tmp_path / "t.aiff"), encode(4.0, tmp_path / "t.au"),
             encode(4.0, tmp_path / "t.aac", "-c:a", "aac", "-f", "adts")]
    misnamed = tmp_path / "really-mp3.m4a"
    misnamed.write_bytes((tmp_path / "t.mp3").read_bytes())
    for path in [*made, misnamed]:
        decoded = decode(path, max_seconds=600)
        assert decoded.size / SR == pytest.approx(4.0, abs=0.1), path.name


# -- 1. ffmpeg never talks to the network --------------------------------------------------------------

NETWORK_CASES = {
    "sample-aes key httpproxy": ("key", '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="httpproxy://127.0.0.1:{port}/'
                                        'KEY-REQUEST.key",KEYFORMAT="identity"'),
    "aes-128 key httpproxy": ("key", '#EXT-X-KEY:METHOD=AES-128,URI="httpproxy://127.0.0.1:{port}/k.key"'),
    "aes-128 key tcp": ("key", '#EXT-X-KEY:METHOD=AES-128,URI="tcp://127.0.0.1:{port}"'),
    "segment httpproxy": ("segment", "httpproxy://127.0.0.1:{port}/seg.ts"),
    "segment tcp": ("segment", "tcp://127.0.0.1:{port}"),
}


def attack_playlist(case: str, segments: list[str], port: int) -> bytes:
    where, text = NETWORK_CASES[case]
    if where == "key":
        return media_playlist(segments, key=text.format(port=port))
    return media_playlist([*segments[:1], text.format(port=port), *segments[1:]])


@pytest.mark.parametrize("through", ["hls link", "long-track page"])
@pytest.mark.parametrize("case", list(NETWORK_CASES))
@on_loop
async def test_keys_and_segments_outside_http_reach_nothing(
        service: Service, http_server: LocalHTTPServer, tripwire: Tripwire, tmp_path: Path, case: str,
        through: str) -> None:
    body = attack_playlist(case, hls_segments(http_server, tmp_path), tripwire.port)
    playlist = http_server.add_file("attack/index.m3u8", body, "application/vnd.apple.mpegurl")
    url = playlist if through == "hls link" else long_track_page(http_server, playlist)
    with pytest.raises(FetchRefused, match="we do not fetch"):  # one line: what the user is told
        await service.classify(url, guild_id=GUILD, user_id=ALICE)
    assert tripwire.connections == []
    assert staged_nothing(service)


# -- 2. links are bounded --------------------------------------------------------------------------------

def socket_owner(client: tuple[str, int], server_port: int) -> int | None:
    """The process holding the client end of a TCP connection from `client` to `server_port` on
    127.0.0.1 (Linux /proc): where the download runs."""
    wanted = f"0100007F:{client[1]:04X} 0100007F:{server_port:04X}"
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if f"{fields[1]} {fields[2]}" == wanted:
            inode = fields[9]
    if inode is None:
        return None
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == f"socket:[{inode}]" for fd in fd_dir.iterdir()):
                return int(fd_dir.parent.name)
        except OSError:
            continue
    return None


def owners(server: LocalHTTPServer) -> set[int | None]:
    return {socket_owner(client, server.port) for client in list(server.held)}


async def until(condition: object, what: str) -> None:
    """Wait for a state (not for a time): polls `condition()`; the generous cap only turns a hang into a
    failure that names what never happened."""
    for _ in range(1200):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


@on_loop
async def test_slow_links_hold_only_the_link_workers(service: Service, http_server: LocalHTTPServer,
                                                     tmp_path: Path) -> None:
    gate = threading.Event()
    body = encode(8.0, tmp_path / "slow.wav")
    urls = [http_server.add_held_file(f"slow{i}.wav", body.read_bytes(), "audio/wav", gate) for i in range(3)]
    members = [ALICE, BOB, CAROL]
    slow = [asyncio.create_task(service.classify(url, guild_id=GUILD, user_id=member))
            for url, member in zip(urls, members)]
    try:
        # (a client yt-dlp hung up on after reading the start of its answer is dropped from `held` soon)
        await until(lambda: len(http_server.held) == 2 and service.fetches.pending == 3
                    and None not in owners(http_server), "two slow downloads held and a third waiting")
        # the downloads run in the link workers' processes, not in this one (nor its threads)
        assert os.getpid() not in owners(http_server)
        # the link backlog is full: one more link is told to come back, at once
        with pytest.raises(Busy, match="busy"):
            await service.classify(http_server.url("slow0.wav"), guild_id=GUILD, user_id=DAVE)
        # a member with a request in flight is told to wait for it
        with pytest.raises(MemberBusy, match="already have a request"):
            await service.classify(Upload("tone.wav", body.read_bytes()), guild_id=GUILD, user_id=ALICE)
        # everything else goes on: the default thread pool and an analysis of another member's upload
        assert await asyncio.gather(*(asyncio.to_thread(sum, [i, 1]) for i in range(40))) == \
            [i + 1 for i in range(40)]
        report = await service.classify(Upload("tone.wav", body.read_bytes()), guild_id=GUILD, user_id=ERIN)
        assert report.segments >= 1
        assert len(http_server.held) == 2 and all(not task.done() for task in slow)
    finally:
        gate.set()
    results = await asyncio.gather(*slow, return_exceptions=True)
    assert all(isinstance(r, GenreReport) for r in results), results
    assert service.fetches.pending == 0 and staged_nothing(service)


@on_loop
async def test_a_huge_page_is_parsed_in_a_link_worker(service: Service, http_server: LocalHTTPServer) -> None:
    gate = threading.Event()
    page = ("<html><head><title>big</title></head><body>" + "<div class=\"x\">words words</div>\n" * 420_000
            + "</body></html>").encode()
    assert len(page) > 13 * 2**20
    url = http_server.add_held_file("big.html", page, "text/html; charset=utf-8", gate)
    task = asyncio.create_task(service.classify(url, guild_id=GUILD, user_id=BOB))
    try:
        await until(lambda: len(http_server.held) == 1 and None not in owners(http_server),
                    "the page download held")
        assert os.getpid() not in owners(http_server)
    finally:
        gate.set()
    with pytest.raises(FetchRefused, match="not a site or file we can get audio from"):
        await task
    assert staged_nothing(service)


# -- 3. shared audio -------------------------------------------------------------------------------------

@on_loop
async def test_a_failed_add_in_one_server_keeps_another_servers_audio(service: Service,
                                                                     tmp_path: Path) -> None:
    y = synth_tone(8.0, sr=SR) * np.float32(0.9)
    data = write_audio(tmp_path / "shared.ogg", y).read_bytes()
    first = await service.add_to_library(OTHER_GUILD, [Upload("shared.ogg", data)], added_by=CAROL)
    assert len(first.added) == 1
    theirs = await service.store.track(OTHER_GUILD, first.added[0].track_id)
    assert theirs is not None and Path(theirs.audio_path).is_file()
    # the same bytes added to this server, whose first analysis then fails (as a worker crash, a timeout or
    # a full queue make it fail): the service discards the new track and its copy
    report = await service.add_to_library(GUILD, [Upload("same.ogg", data)], added_by=DAVE)
    assert len(report.added) == 1
    await service.library.discard(GUILD, [report.added[0].track_id])
    assert await service.store.track(GUILD, report.added[0].track_id) is None
    assert Path(theirs.audio_path).is_file()
    again = await service.reindex(OTHER_GUILD, full=True)
    assert again.failed == [] and again.analysed == 1


@on_loop
async def test_a_reindex_failure_names_no_server_path(service: Service, tmp_path: Path) -> None:
    folder = tmp_path / "private-layout"
    folder.mkdir()
    path = write_audio(folder / "gone.ogg", synth_tone(6.0, sr=SR) * np.float32(0.5))
    added = await service.add_to_library(GUILD, [path], added_by=ERIN)
    assert len(added.added) == 1
    path.unlink()
    report = await service.reindex(GUILD, full=True)
    [(source, reason)] = [f for f in report.failed if "gone" in f[1]]
    assert "gone.ogg" in reason and str(folder) not in reason
