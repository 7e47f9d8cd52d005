"""A real HTTP server on 127.0.0.1 for tests that fetch links (yt-dlp, ffmpeg, aiohttp clients).

Registered as a pytest plugin, it provides:

* `http_server` — one running `LocalHTTPServer`, stopped after the test;
* `http_server_factory` — a callable that starts more of them (e.g. a second server to redirect to).

Routes are added in the test: files (with optional Range support, a missing Content-Length, or a slow
drip), HTML pages, RSS feeds of audio, redirects and bare status codes. Every request is recorded in
`requests` so a test can assert what was (or was not) fetched.
"""
from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

import pytest

_CHUNK = 64 * 1024


@dataclass
class Route:
    """What the server answers for one path."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    send_length: bool = True
    """False: no Content-Length; the body ends when the connection closes."""
    drip_seconds: float = 0.0
    """Pause between 64-KiB chunks, to make a slow server."""
    repeat: int = 1
    """Send the body this many times (a large or endless response without holding it in memory)."""
    gate: threading.Event | None = None
    """Send the first chunk, then hold the rest until the test sets this (a server that trickles for as long
    as the test wants); `LocalHTTPServer.held` lists the clients waiting on it."""


class LocalHTTPServer:
    """A threaded `http.server` with routes set by the test; `url(path)` gives an absolute URL."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.held: list[tuple[str, int]] = []
        """(host, port) of the clients whose responses are waiting on a gate now."""
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="local-http", daemon=True)

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, path: str, *, host: str | None = None) -> str:
        """Absolute URL of `path`; `host` respells the host (e.g. "localhost") with the same port."""
        return f"http://{host or self.host}:{self.port}/{path.lstrip('/')}"

    def paths_requested(self) -> list[str]:
        with self._lock:
            return [path for _method, path, _headers in self.requests]

    def add_file(self, path: str, body: bytes, content_type: str = "application/octet-stream", *,
                 send_length: bool = True, drip_seconds: float = 0.0, repeat: int = 1) -> str:
        self.routes["/" + path.lstrip("/")] = Route(body=body, content_type=content_type,
                                                     send_length=send_length, drip_seconds=drip_seconds,
                                                     repeat=repeat)
        return self.url(path)

    def add_held_file(self, path: str, body: bytes, content_type: str, gate: threading.Event) -> str:
        """A file whose first chunk is sent at once and the rest once `gate` is set."""
        self.routes["/" + path.lstrip("/")] = Route(body=body, content_type=content_type, gate=gate)
        return self.url(path)

    def add_page(self, path: str, html: str) -> str:
        return self.add_file(path, html.encode("utf-8"), "text/html; charset=utf-8")

    def add_feed(self, path: str, items: list[tuple[str, str]], *, title: str = "Feed") -> str:
        """A podcast-style RSS feed of (title, audio URL) items, each URL an enclosure and the item's guid
        (yt-dlp reads such a feed as a playlist of links, the guid smuggled along with each)."""
        body = "".join(f"<item><title>{escape(name)}</title><guid>{escape(url)}</guid>"
                       f"<enclosure url=\"{escape(url)}\" type=\"audio/wav\" length=\"1\"/></item>"
                       for name, url in items)
        feed = f"<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>{escape(title)}</title>{body}" \
               "</channel></rss>"
        return self.add_file(path, feed.encode(), "application/rss+xml")

    def add_redirect(self, path: str, location: str, status: int = 302) -> str:
        self.routes["/" + path.lstrip("/")] = Route(status=status, headers={"Location": location},
                                                     content_type="text/plain")
        return self.url(path)

    def add_status(self, path: str, status: int) -> str:
        self.routes["/" + path.lstrip("/")] = Route(status=status, body=f"{status}\n".encode(),
                                                     content_type="text/plain")
        return self.url(path)

    def start(self) -> LocalHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _record(self, method: str, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append((method, path, headers))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self._answer(send_body=False)

            def do_GET(self) -> None:
                self._answer(send_body=True)

            def _answer(self, *, send_body: bool) -> None:
                path = self.path.split("?", 1)[0]
                server._record(self.command, path, dict(self.headers.items()))
                route = server.routes.get(path)
                if route is None:
                    route = Route(status=404, body=b"not found\n", content_type="text/plain")
                body, status, repeat, extra = route.body, route.status, route.repeat, {}
                ranged = self.headers.get("Range", "")
                if status == 200 and repeat == 1 and ranged.startswith("bytes=") and route.send_length:
                    start_text, _, end_text = ranged[6:].partition("-")
                    if start_text.isdigit() and int(start_text) < len(body):
                        start = int(start_text)
                        end = min(int(end_text), len(body) - 1) if end_text.isdigit() else len(body) - 1
                        extra["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
                        body, status = body[start:end + 1], 206
                self.send_response(status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Accept-Ranges", "bytes")
                for name, value in {**route.headers, **extra}.items():
                    self.send_header(name, value)
                if route.send_length:
                    self.send_header("Content-Length", str(len(body) * repeat))
                self.end_headers()
                if send_body:
                    self._send_body(body, repeat, route.drip_seconds, route.gate)

            def _send_body(self, body: bytes, repeat: int, drip_seconds: float,
                           gate: threading.Event | None) -> None:
                try:
                    for _ in range(repeat):
                        for offset in range(0, len(body), _CHUNK):
                            self.wfile.write(body[offset:offset + _CHUNK])
                            if drip_seconds:
                                self.wfile.flush()
                                time.sleep(drip_seconds)
                            if gate is not None and offset == 0:
                                self.wfile.flush()
                                if not self._hold(gate):
                                    return
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _hold(self, gate: threading.Event) -> bool:
                """Wait for `gate`; False (stop sending) if the client hangs up meanwhile, as yt-dlp does
                once it has read the start of a response to see what it is."""
                client = (str(self.client_address[0]), int(self.client_address[1]))
                with server._lock:
                    server.held.append(client)
                try:
                    while not gate.wait(0.05):
                        readable, _, _ = select.select([self.connection], [], [], 0)
                        if readable and not self.connection.recv(1, socket.MSG_PEEK):
                            return False
                    return True
                finally:
                    with server._lock:
                        server.held.remove(client)

        return Handler


@pytest.fixture
def http_server_factory() -> Iterator[Callable[[], LocalHTTPServer]]:
    """Start as many local servers as a test needs; all are stopped afterwards."""
    started: list[LocalHTTPServer] = []

    def start() -> LocalHTTPServer:
        server = LocalHTTPServer().start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def http_server(http_server_factory: Callable[[], LocalHTTPServer]) -> LocalHTTPServer:
    """One local HTTP server on 127.0.0.1 with an ephemeral port."""
    return http_server_factory()
