"""Small web reads (a JSON answer, an HTML page) through the same SSRF guard and caps as every link.

`core.streaming` reads what Spotify, Apple Music, Deezer and Tidal publish about a track. Those reads are
made here, never with a client of their own, so that they obey the rules every fetch obeys:

* every hop (the first request and each redirect) is pre-checked by `core.netguard.check_url` and then
  connects through a `GuardProxy`, which resolves the host itself and refuses non-public addresses;
  redirects are followed by this module (at most `MAX_REDIRECTS`), never by a library that could take a
  scheme or a proxy bypass we did not check;
* one `WebSession` is one guard proxy: one wall-clock deadline (`max_download_seconds`) and one byte budget
  (`EXTRACTION_ALLOWANCE_BYTES`) for all of its reads;
* each answer is capped at `MAX_PAGE_BYTES` (Content-Length first, then the bytes as they arrive) and must
  carry one of the content types the caller expects.

The proxy is spoken to directly with `http.client` (absolute-form requests for http, CONNECT for https), so
no `no_proxy` environment variable can send a request around it. It blocks: call it from a worker thread.
"""
from __future__ import annotations

import http.client
import logging
import ssl
import time
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urljoin, urlsplit

from core.config import Settings
from core.errors import FetchFailed, FetchRefused, TooLarge, UserError
from core.netguard import Connector, GuardProxy, Resolver, check_url, direct_connector, system_resolver

log = logging.getLogger(__name__)

MAX_PAGE_BYTES = 4 * 1024 * 1024
"""One page or API answer at most (a Spotify album page is about 0.3 MB, an Apple Music one about 1 MB)."""
MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "Mozilla/5.0 (compatible; Cratedigger; +https://github.com/cratedigger)"
HTML = ("text/html", "application/xhtml+xml")
JSON = ("application/json", "text/javascript", "application/javascript")
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class WebAnswer:
    url: str
    """Where the answer came from, after redirects."""
    content_type: str
    text: str


class WebSession:
    """Reads through one guard proxy; use as a context manager (the proxy stops when the block ends)."""

    def __init__(self, settings: Settings, *, resolver: Resolver = system_resolver,
                 connector: Connector = direct_connector) -> None:
        from core.fetch import EXTRACTION_ALLOWANCE_BYTES

        self.settings = settings
        self._timeout = max(1.0, min(20.0, settings.max_download_seconds))
        self._guard = GuardProxy(settings.fetch_allow_hosts, deadline=time.monotonic()
                                 + settings.max_download_seconds, byte_budget=EXTRACTION_ALLOWANCE_BYTES,
                                 resolver=resolver, connector=connector)

    def __enter__(self) -> WebSession:
        self._guard.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._guard.__exit__(kind, exc, tb)

    def get(self, url: str, *, accept: tuple[str, ...], what: str,
            max_bytes: int = MAX_PAGE_BYTES) -> WebAnswer:
        """GET `url`, following redirects; `what` names the source in errors ("Spotify's page").

        Raises `FetchRefused` (a hop at a private address, a wrong content type), `TooLarge`, or
        `FetchFailed` (an HTTP error, a timeout, too many redirects), each with a one-line message."""
        for _hop in range(MAX_REDIRECTS + 1):
            status, headers, body = self._exchange(url, accept, what, max_bytes)
            if status in REDIRECTS:
                location = headers.get("location")
                if not location:
                    raise FetchFailed(f"{what} answered with a redirect to nowhere.")
                url = urljoin(url, location)
                continue
            if status in (404, 410):
                raise FetchFailed(f"{what} does not know that link (HTTP {status}).")
            if status != 200:
                raise FetchFailed(f"{what} answered with an error (HTTP {status}).")
            media, charset = _content_type(headers.get("content-type", ""))
            if media not in accept:
                raise FetchRefused(f"{what} answered with {media or 'no content type'} where "
                                   f"{accept[0]} was expected.")
            return WebAnswer(url, media, body.decode(charset, "replace"))
        raise FetchFailed(f"{what} redirected more than {MAX_REDIRECTS} times.")

    def redirect_target(self, url: str, *, what: str) -> str:
        """Where `url` redirects to (a share link's target), without following it."""
        status, headers, _body = self._exchange(url, HTML, what, MAX_PAGE_BYTES)
        location = headers.get("location")
        if status not in REDIRECTS or not location:
            raise FetchFailed(f"{what} did not lead anywhere (HTTP {status}).")
        return urljoin(url, location)

    def _exchange(self, url: str, accept: tuple[str, ...], what: str,
                  max_bytes: int) -> tuple[int, dict[str, str], bytes]:
        """One request through the guard: (status, lower-cased headers, body of at most `max_bytes`)."""
        parts = check_url(url, self.settings)
        host, port = urlsplit(self._guard.url).hostname, urlsplit(self._guard.url).port
        netloc = parts.netloc
        headers = {"Host": netloc, "User-Agent": USER_AGENT, "Accept": ", ".join(accept),
                   "Accept-Encoding": "identity"}
        conn: http.client.HTTPConnection
        if parts.scheme.lower() == "https":
            conn = http.client.HTTPSConnection(str(host), port, timeout=self._timeout,
                                               context=ssl.create_default_context())
            conn.set_tunnel(parts.hostname or "", parts.port or 443)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        else:
            conn = http.client.HTTPConnection(str(host), port, timeout=self._timeout)
            target = parts._replace(fragment="").geturl()
        try:
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
            status = response.status
            answer = {k.lower(): v for k, v in response.getheaders()}
            body = b"" if status in REDIRECTS else _read_capped(response, answer, what, max_bytes)
        except UserError:
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise self._why(exc, what) from None
        finally:
            conn.close()
        stats = self._guard.stats
        if stats.refusals or stats.timed_out or stats.over_budget:  # a refused hop (the proxy answered
            raise self._why(None, what)  # 403), or a body the guard cut short: never parse half a page
        return status, answer, body

    def _why(self, exc: BaseException | None, what: str) -> UserError:
        """The guard's reason comes first: it knows why a connection was cut."""
        stats = self._guard.stats
        if stats.refusals:
            return stats.refusals[0]
        if stats.timed_out or isinstance(exc, TimeoutError):
            return FetchFailed(f"{what} took longer than {self.settings.max_download_seconds:g} s to answer.")
        if stats.over_budget:
            return TooLarge(f"{what} sent more than we read for one link.")
        log.info("web read failed: %s", exc)
        return FetchFailed(f"Could not reach {what} (network error); try again later.")


def _read_capped(response: http.client.HTTPResponse, headers: dict[str, str], what: str,
                 max_bytes: int) -> bytes:
    too_large = TooLarge(f"{what} is larger than {max_bytes / 2**20:g} MB; that is not a track's page.")
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    received = 0
    while chunk := response.read(_CHUNK):
        received += len(chunk)
        if received > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _content_type(value: str) -> tuple[str, str]:
    """("text/html", "utf-8") from "text/html; charset=UTF-8" (an unknown charset reads as utf-8)."""
    media, _, params = value.partition(";")
    charset = "utf-8"
    for param in params.split(";"):
        name, _, val = param.strip().partition("=")
        if name.lower() == "charset" and val:
            charset = val.strip("\"' ").lower()
    try:
        "".encode(charset)
    except LookupError:
        charset = "utf-8"
    return media.strip().lower(), charset
