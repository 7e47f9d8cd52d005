"""Fetch the audio behind a link with yt-dlp, inside the SSRF guard and the job's limits.

Use it as a context manager; the job's temporary folder (under `workdir`) is deleted when the block
ends, whether it ends normally or by an exception::

    with fetch_audio(url, settings, workdir) as fetched:
        segments = load_segments(fetched.path, max_seconds=..., max_segments=...)

It blocks (network and ffmpeg): the bot runs it in a link worker process (`core.jobs.fetches`), the command
line directly; never on the event loop.

Policy, in the order it is applied:

* `core.netguard.check_url` first (scheme, credentials, literal private addresses); then every
  connection yt-dlp makes goes through a `GuardProxy`, which checks the resolved address of each hop and
  enforces the wall-clock cap (`max_download_seconds`) and a byte budget (`max_download_bytes` plus
  `EXTRACTION_ALLOWANCE_BYTES` for pages and manifests).
* ffmpeg never touches the network: yt-dlp is given no ffmpeg at all (an empty folder as its
  `ffmpeg_location`), so it downloads with its own downloaders (HTTP, HLS, DASH), which speak http(s)
  through the guard only. A stream that only ffmpeg could fetch (HLS with features yt-dlp's own
  downloader lacks, such as SAMPLE-AES keys) is refused (`FetchRefused`), as are protocols the guard
  cannot see (rtmp, rtsp, mms...).
* Playlists (and multi-part videos) and live streams are refused (`FetchRefused`).
* A track whose length the site reports and which is longer than `max_clip_seconds` is refused before
  download (`TooLong`); so is a downloaded file found to be longer.
* The file is downloaded whole, within `max_download_bytes` (`TooLarge` otherwise), and converted here by
  ffmpeg, reading that one local file through `core.audio.ffmpeg_input` (file protocol, audio demuxers
  only), to a mono 22 050 Hz WAV of at most `link_analyse_seconds`: the file `FetchedAudio.path` names.
  Converting proves the download is audio (`FetchRefused` otherwise: a manifest or playlist saved as
  "audio" is never opened) and hands the caller a short file that `core.audio` reads without ffmpeg.
"""
from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.audio import ffmpeg_exe, ffmpeg_input
from core.config import Settings
from core.constants import SAMPLE_RATE
from core.errors import FetchFailed, FetchRefused, PlaylistLink, TooLarge, TooLong, UserError
from core.netguard import (
    Connector,
    GuardProxy,
    GuardStats,
    Resolver,
    check_url,
    direct_connector,
    system_resolver,
)

log = logging.getLogger(__name__)

EXTRACTION_ALLOWANCE_BYTES = 16 * 1024 * 1024
"""Traffic allowed on top of the audio itself: web pages, API answers, manifests, player scripts."""

SAFE_PROTOCOLS = frozenset({"http", "https", "m3u8", "m3u8_native", "http_dash_segments"})
"""Download protocols whose connections all go through the guard (rtmp, rtsp, mms... would not)."""

PLAYLIST_TYPES = ("playlist", "multi_video")
"""yt-dlp's kinds of result that hold several entries."""

NO_FFMPEG_DIR = ".no-ffmpeg"
"""An empty folder in the job folder given to yt-dlp as `ffmpeg_location`: it finds no ffmpeg there and
does not search PATH, so no download step can hand a URL to ffmpeg."""

NORMALISE_TIMEOUT_SECONDS = 60.0
MAX_TEXT_CHARS = 200
_DURATION = re.compile(r"Duration:\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_LOG_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")
MAX_LOG_CHARS = 500
_NEEDS_FFMPEG = re.compile(
    r"delegated to ffmpeg|ffmpeg (?:could not be found|is not installed)|DRM protected", re.IGNORECASE)
"""yt-dlp's words when a download would need ffmpeg (which it is not given) or cannot be played at all."""


@dataclass(frozen=True)
class FetchedAudio:
    """The audio behind a link, ready to analyse, and what the site said about it."""

    path: Path
    """Mono 22 050 Hz WAV inside the job folder: the first `seconds` of the track."""
    seconds: float
    """Length of the audio in `path` (at most `Settings.link_analyse_seconds`)."""
    duration: float | None
    """Length of the whole track, as the downloaded file or else the site says."""
    title: str
    artist: str | None
    source_url: str
    """The link as the user sent it."""
    webpage_url: str
    extractor: str


def is_link(text: str) -> bool:
    """A command's argument names a link (a scheme within its first characters), not a local path."""
    return "://" in text[:16]


@contextmanager
def fetch_audio(url: str, settings: Settings, workdir: Path, *, resolver: Resolver = system_resolver,
                connector: Connector = direct_connector) -> Iterator[FetchedAudio]:
    """Download the audio behind `url` into a fresh folder under `workdir`, deleted on exit.

    Raises `FetchRefused`, `FetchFailed`, `TooLarge` or `TooLong` with a one-line message.
    `resolver` and `connector` are the guard's DNS and socket seams (tests use them to simulate DNS).
    """
    check_url(url, settings)
    with job_folder(workdir) as job_dir:
        yield _fetch(url.strip(), settings, job_dir, resolver, connector)


@contextmanager
def job_folder(workdir: Path) -> Iterator[Path]:
    """A fresh private folder under `workdir` for one fetch, removed when the block ends."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    job_dir = Path(tempfile.mkdtemp(prefix="fetch-", dir=workdir))
    try:
        yield job_dir
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def fetch_into(url: str, settings: Settings, job_dir: Path) -> FetchedAudio:
    """`fetch_audio`'s work into `job_dir`, a folder the caller made and removes: the form a worker
    process runs (`core.jobs.fetches`), so a killed worker leaves nothing the caller does not clean."""
    check_url(url, settings)
    return _fetch(url.strip(), settings, job_dir, system_resolver, direct_connector)


def _fetch(url: str, settings: Settings, job_dir: Path, resolver: Resolver,
           connector: Connector) -> FetchedAudio:
    from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor

    job = _Job(settings)
    no_ffmpeg = job_dir / NO_FFMPEG_DIR
    no_ffmpeg.mkdir()
    # yt-dlp's downloaders ask whether ffmpeg exists through this context variable (the `ffmpeg_location`
    # option is not consulted there): both name the empty folder.
    token = FFmpegPostProcessor._ffmpeg_location.set(str(no_ffmpeg))
    try:
        info, stats = guarded_extract(url, settings, _download_options(settings, job_dir, job, no_ffmpeg),
                                      download=True, byte_budget=settings.max_download_bytes
                                      + EXTRACTION_ALLOWANCE_BYTES, resolver=resolver, connector=connector,
                                      job=job)
    finally:
        FFmpegPostProcessor._ffmpeg_location.reset(token)
    if stats.refusals:
        log.info("the guard refused %d connection(s) during a successful fetch of %s",
                 len(stats.refusals), url)
    if not isinstance(info, dict):
        raise FetchFailed("Could not get audio from that link.")
    if info.get("_type") in PLAYLIST_TYPES:
        raise _playlist()
    downloaded = _downloaded_file(info, job_dir, job, settings)
    wav = job_dir / "audio.wav"
    file_duration = _normalise(downloaded, wav, settings.link_analyse_seconds)
    downloaded.unlink(missing_ok=True)
    duration = file_duration if file_duration is not None else _number(info.get("duration"))
    if duration is not None and duration > settings.max_clip_seconds:
        raise _too_long(settings)
    seconds = _wav_seconds(wav)
    return FetchedAudio(
        path=wav,
        seconds=seconds,
        duration=duration,
        title=clean_text(info.get("track") or info.get("title") or info.get("id")) or "untitled",
        artist=clean_text(_artist(info)),
        source_url=url,
        webpage_url=str(info.get("webpage_url") or url),
        extractor=str(info.get("extractor") or info.get("extractor_key") or "unknown"),
    )


class _Job:
    """Per-fetch state that yt-dlp's callbacks report into."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.over_max_filesize = False
        self.needs_ffmpeg = False
        """yt-dlp wanted ffmpeg for a download (and found none): the stream is refused."""

    def match_filter(self, info: dict[str, Any], *, incomplete: bool | set[str] = False) -> str | None:
        """Called by yt-dlp for each entry before it is extracted and again before it is downloaded.

        Raising stops yt-dlp at once (it re-raises anything that is not its own error), so a playlist
        is refused before its entries are walked: yt-dlp first asks about the playlist itself (a dict of
        `playlist_*` fields without an `id`), then about each entry (one with a `playlist_index`); an
        RSS feed's entries are links it would otherwise extract before asking.
        """
        itself = "playlist_id" in info and "id" not in info
        if itself or info.get("playlist_index") is not None or info.get("_type") in PLAYLIST_TYPES:
            raise _playlist()
        if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
            raise FetchRefused("That link is a live stream; send a link to a recorded track.")
        duration = _number(info.get("duration"))
        if duration is not None and duration > self.settings.max_clip_seconds:
            raise _too_long(self.settings)
        if incomplete is False:
            protocols = set(str(info.get("protocol") or "").split("+"))
            if not protocols <= SAFE_PROTOCOLS:
                raise FetchRefused("That link streams audio in a way we do not fetch; try another link.")
        return None



class _YtDlpLog:
    """yt-dlp's messages into our logger (yt-dlp stays quiet on the console)."""

    def __init__(self, job: _Job) -> None:
        self._job = job

    def _note(self, message: str) -> str:
        if "max-filesize" in message:
            self._job.over_max_filesize = True
        if _NEEDS_FFMPEG.search(message):
            self._job.needs_ffmpeg = True
        return log_safe(message)

    def debug(self, message: str) -> None:
        log.debug("yt-dlp: %s", self._note(message))

    def info(self, message: str) -> None:
        log.debug("yt-dlp: %s", self._note(message))

    def warning(self, message: str) -> None:
        log.info("yt-dlp: %s", self._note(message))

    def error(self, message: str) -> None:
        log.info("yt-dlp: %s", self._note(message))


def guarded_extract(url: str, settings: Settings, options: dict[str, Any], *, download: bool,
                    byte_budget: int, resolver: Resolver = system_resolver,
                    connector: Connector = direct_connector,
                    job: _Job | None = None) -> tuple[Any, GuardStats]:
    """One yt-dlp `extract_info` with every connection through a fresh `GuardProxy` (the job's deadline
    and `byte_budget`), yt-dlp's failures mapped to one-line user errors. `options` are added to the
    network and quiet options every job shares; `job` collects what yt-dlp's messages reveal. Returns
    yt-dlp's info and what the guard saw."""
    import yt_dlp

    job = job or _Job(settings)
    deadline = time.monotonic() + settings.max_download_seconds
    with GuardProxy(settings.fetch_allow_hosts, deadline=deadline, byte_budget=byte_budget,
                    resolver=resolver, connector=connector) as guard:
        every_job = _network_options(settings, guard.url, _YtDlpLog(job))
        try:
            with yt_dlp.YoutubeDL({**every_job, **options}) as ydl:
                info = ydl.extract_info(url, download=download)
        except yt_dlp.utils.YoutubeDLError as exc:
            raise _map_error(exc, guard.stats, settings, needs_ffmpeg=job.needs_ffmpeg) from None
        return info, guard.stats


def _network_options(settings: Settings, proxy: str, logger: Any) -> dict[str, Any]:
    """Through the guard, no retries beyond one, no cookies or cache, nothing on the console."""
    timeout = max(1.0, min(20.0, settings.max_download_seconds))
    return {
        "proxy": proxy,
        "socket_timeout": timeout,
        "retries": 1,
        "extractor_retries": 0,
        "cachedir": False,
        "cookiefile": None,
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "color": {"stdout": "never", "stderr": "never"},
        "logger": logger,
    }


def _download_options(settings: Settings, job_dir: Path, job: _Job, no_ffmpeg: Path) -> dict[str, Any]:
    return {
        "format": "bestaudio/best",
        "paths": {"home": str(job_dir), "temp": str(job_dir)},
        "outtmpl": {"default": "download.%(ext)s"},
        "restrictfilenames": True,
        "overwrites": True,
        "noplaylist": True,
        "lazy_playlist": True,
        "match_filter": job.match_filter,
        "max_filesize": settings.max_download_bytes,
        "fragment_retries": 1,
        "file_access_retries": 0,
        "hls_prefer_native": True,
        "external_downloader": {"default": "native"},
        "ffmpeg_location": str(no_ffmpeg),
        "fixup": "never",
        "updatetime": False,
    }


def _downloaded_file(info: dict[str, Any], job_dir: Path, job: _Job, settings: Settings) -> Path:
    downloads = info.get("requested_downloads") or []
    filepath = downloads[0].get("filepath") if downloads else None
    if not filepath or not Path(filepath).is_file():
        if job.over_max_filesize:
            raise _too_large(settings)
        raise FetchFailed("Nothing could be downloaded from that link.")
    path = Path(filepath).resolve()
    if not path.is_relative_to(job_dir.resolve()):
        raise FetchFailed("Nothing could be downloaded from that link.")
    if path.stat().st_size > settings.max_download_bytes:
        raise _too_large(settings)
    return path


def _normalise(source: Path, target: Path, seconds: float) -> float | None:
    """Convert the first `seconds` of `source` to mono WAV at SAMPLE_RATE; return the source's length
    as ffmpeg reports it (None when the container does not say)."""
    cmd = [
        ffmpeg_exe(), "-nostdin", "-hide_banner", *ffmpeg_input(source), "-t", f"{seconds:.3f}",
        "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE),
        "-c:a", "pcm_s16le", "-y", str(target),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=NORMALISE_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise FetchFailed("The downloaded audio took too long to convert; it may be damaged.") from None
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0 or not target.is_file() or _wav_seconds(target) <= 0:
        log.debug("ffmpeg could not convert %s: %s", source.name, log_safe(stderr.strip().splitlines()[-1:]))
        raise FetchRefused("That link did not lead to audio we can read.")
    match = _DURATION.search(stderr)
    if match is None:
        return None
    hours, minutes, secs = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(secs)


def _wav_seconds(path: Path) -> float:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        return 0.0
    return info.frames / info.samplerate if info.samplerate else 0.0


def _map_error(exc: Exception, stats: GuardStats, settings: Settings, *, needs_ffmpeg: bool) -> UserError:
    """The user error behind a yt-dlp failure; the guard's view comes first, as it knows why."""
    from yt_dlp.networking.exceptions import HTTPError, NoSupportingHandlers, TransportError
    from yt_dlp.utils import GeoRestrictedError, UnsupportedError

    if stats.refusals:
        return stats.refusals[0]
    if stats.over_budget:
        return _too_large(settings)
    if stats.timed_out:
        return FetchFailed(f"The download took longer than {settings.max_download_seconds:g} s; "
                           "try again later or another link.")
    if needs_ffmpeg:
        return FetchRefused("That link streams audio in a way we do not fetch (encrypted or needing an "
                            "external downloader); try another link.")
    if stats.unreachable and not stats.connections:  # the guard's 502: no site ever answered
        return FetchFailed("Could not reach the site: nothing answered at that address; check the link.")
    for cause in _causes(exc):
        if isinstance(cause, UnsupportedError):
            return FetchRefused("That link is not a site or file we can get audio from.")
        if isinstance(cause, NoSupportingHandlers):  # a key or segment at file://, tcp://, httpproxy://...
            return FetchRefused("That link's stream points outside http(s), which we do not fetch.")
        if isinstance(cause, HTTPError):
            if cause.status in (404, 410):
                return FetchFailed(f"The link is broken: the site answered {cause.status} (not found).")
            return FetchFailed(f"The site answered with an error (HTTP {cause.status}).")
        if isinstance(cause, GeoRestrictedError):
            return FetchFailed("That audio is not available from our location.")
        if isinstance(cause, (TransportError, TimeoutError, ConnectionError)):
            return FetchFailed("Could not reach the site (network error or timeout); try again later.")
    log.info("unmapped yt-dlp failure: %s", log_safe(str(exc)))
    return FetchFailed("Could not get audio from that link.")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The error and what caused it: yt-dlp wraps errors in DownloadError and ExtractorError."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        exc_info = getattr(current, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1:
            stack.append(exc_info[1])
        stack += [getattr(current, "cause", None), current.__cause__, current.__context__]


def _artist(info: dict[str, Any]) -> str | None:
    artists = info.get("artists")
    if isinstance(artists, list) and artists:
        return ", ".join(str(a) for a in artists)
    for key in ("artist", "creator", "uploader", "channel"):
        if info.get(key):
            return str(info[key])
    return None


def clean_text(value: object) -> str | None:
    """Metadata from the site, made safe to store: one line, no control characters, bounded length."""
    if value is None:
        return None
    text = " ".join(_CONTROL.sub(" ", str(value)).split())
    return text[:MAX_TEXT_CHARS] or None


def log_safe(text: object) -> str:
    """Third-party text (yt-dlp's messages carry sites' titles and answers) made safe for one log line:
    terminal escape sequences dropped, every other control, line-break and bidi character written as its
    escape, so a crafted title cannot forge log lines or rewrite an operator's terminal; bounded."""
    flat = _LOG_UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"),
                           _ANSI.sub("", str(text)))
    return flat if len(flat) <= MAX_LOG_CHARS else flat[:MAX_LOG_CHARS] + "…"


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 and number != float("inf") else None


def _playlist() -> PlaylistLink:
    return PlaylistLink("That link is a playlist; send a link to a single track.")


def _too_long(settings: Settings) -> TooLong:
    return TooLong(f"That track is longer than {settings.max_clip_seconds / 60:g} minutes; "
                   "send a shorter one.")


def _too_large(settings: Settings) -> TooLarge:
    return TooLarge(f"That download is bigger than {settings.max_download_mb:g} MB; send a smaller file.")
