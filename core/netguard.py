"""Server-side request forgery guard: links may only reach the public internet.

Two layers, because a check made before a fetch is not enough:

* `check_url` is a fast pre-check the CLI and the bot run before queueing work: scheme (http/https only),
  no credentials in the URL, no control characters, and no *literal* non-public address (including
  spellings such as ``2130706433``, ``0177.0.0.1`` or ``0x7f.1``). It does no DNS lookup.
* `GuardProxy` is the authoritative check. yt-dlp (and the ffmpeg it starts) are pointed at this small
  HTTP forward proxy (plain requests and CONNECT for https) on 127.0.0.1. For every connection, redirect
  hops included, the proxy resolves the target host itself, refuses unless *every* resolved address is
  public, and then connects to the very address it checked. The fetcher never resolves the name itself,
  so a DNS answer that changes between a check and the connection (rebinding) cannot slip through.
  The proxy also enforces the job's wall-clock deadline and byte budget on all traffic.

Allowlist (`Settings.fetch_allow_hosts`): entries are ``host`` or ``host:port`` (IPv6 as ``[::1]:8080``
or bare ``::1``), compared with the host exactly as spelled in the URL (case-insensitive). An allowlisted
host may resolve to any address; nothing else may reach a non-public one. Matching the spelling, not the
resolved address, keeps ``127.0.0.1`` allowlisted from also allowing ``localhost`` or ``2130706433``.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from core.config import Settings
from core.errors import FetchFailed, FetchRefused, UserError

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[IPAddress]]
Connector = Callable[[IPAddress, int, float], socket.socket]

ALLOWED_SCHEMES = frozenset({"http", "https"})
MAX_URL_LENGTH = 2048
MAX_HEAD_BYTES = 64 * 1024
MAX_CONNECTIONS = 32
CONNECT_TIMEOUT_SECONDS = 10.0
_POLL_SECONDS = 0.2
_BUFFER = 64 * 1024

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_HOP_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization",
                          "proxy-authenticate", "te", "trailer", "upgrade"})


def is_public(address: IPAddress) -> bool:
    """True only for globally routable unicast addresses.

    IPv6 forms that embed an IPv4 address (mapped ``::ffff:a.b.c.d``, compatible ``::a.b.c.d``, NAT64,
    6to4) are judged by the IPv4 address inside, so ``::ffff:127.0.0.1`` is loopback. `ipaddress` alone
    calls multicast "global" and (before Python 3.13) ignores mapped addresses, hence the explicit tests.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
        if address in _NAT64_LOCAL or address.is_site_local:
            return False
    return address.is_global and not (
        address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
        or address.is_reserved or address.is_unspecified
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def normalise_host(host: str) -> str:
    """Lower-case, without IPv6 brackets or a trailing dot: the spelling allowlist entries are compared to."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".")


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any spelling a resolver accepts (decimal, octal, hex,
    short forms like ``127.1``), or None for a name that needs DNS."""
    host = normalise_host(host)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _parse_allow_entry(entry: str) -> tuple[str, int | None]:
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return normalise_host(host), int(port)
    return normalise_host(entry), None


def is_allowlisted(host: str, port: int, allow_hosts: Iterable[str]) -> bool:
    """Whether `host:port` is explicitly allowed (see the module docstring for the entry syntax)."""
    host = normalise_host(host)
    for entry in allow_hosts:
        allowed_host, allowed_port = _parse_allow_entry(entry)
        if allowed_host == host and allowed_port in (None, port):
            return True
    return False


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _refuse_private(host: str) -> FetchRefused:
    return FetchRefused(
        f"That link points to a private or local network address ({host}); only public sites are allowed."
    )


def check_url(url: str, settings: Settings) -> SplitResult:
    """Fast pre-check of a link a user sent; raises `FetchRefused` with a one-line reason.

    No DNS lookup is made here (it would be slow, and its answer could change before the fetch);
    `GuardProxy` checks the resolved address of every connection. Returns the parsed URL.
    """
    url = url.strip()
    if not url:
        raise FetchRefused("That link is empty.")
    if len(url) > MAX_URL_LENGTH:
        raise FetchRefused(f"That link is longer than {MAX_URL_LENGTH} characters.")
    if _CONTROL.search(url):
        raise FetchRefused("That link contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchRefused("That link is not a valid web address.") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = f"{scheme}://" if scheme else "a link without http(s)://"
        raise FetchRefused(f"Only http:// and https:// links are accepted, not {shown}.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise FetchRefused("Links with a user name or password in them are not accepted.")
    host = normalise_host(parts.hostname or "")
    if not host:
        raise FetchRefused("That link has no host name.")
    port = port or _default_port(scheme)
    if is_allowlisted(host, port, settings.fetch_allow_hosts):
        return parts
    if host == "localhost" or host.endswith(".localhost"):
        raise _refuse_private(host)
    address = literal_address(host)
    if address is not None and not is_public(address):
        raise _refuse_private(host)
    if address is None and not is_domain_name(host):
        raise FetchRefused("That link's host is not a valid domain name.")
    return parts


def is_domain_name(host: str) -> bool:
    """Whether `host` has a DNS spelling (IDNA); a name without one (a stray C1 control character, a label
    over 63 characters, an empty label) could never be resolved, and yt-dlp fails on it with an untyped
    UnicodeError instead of a refusal."""
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for `host` (A and AAAA), in its order of preference."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        seen.setdefault(ipaddress.ip_address(sockaddr[0]), None)
    return list(seen)


def direct_connector(address: IPAddress, port: int, timeout: float) -> socket.socket:
    """Connect to an address already checked: a literal, so nothing resolves the name again."""
    return socket.create_connection((str(address), port), timeout=timeout)


def resolve_checked(host: str, port: int, allow_hosts: Iterable[str],
                    resolver: Resolver = system_resolver) -> list[IPAddress]:
    """Resolve `host` once and return its addresses if the connection may go ahead.

    Refused unless the host is allowlisted or every resolved address is public: a name that answers
    with one public and one private address is refused, so the order of connection attempts cannot
    matter.
    """
    host = normalise_host(host)
    if not host:
        raise FetchRefused("That link has no host name.")
    allowed = is_allowlisted(host, port, allow_hosts)
    if not allowed and (host == "localhost" or host.endswith(".localhost")):
        raise _refuse_private(host)
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError, ValueError):
        raise FetchFailed(f"The site {host} could not be found (DNS lookup failed).") from None
    if not addresses:
        raise FetchFailed(f"The site {host} could not be found (DNS lookup failed).")
    if not allowed and not all(is_public(a) for a in addresses):
        raise _refuse_private(host)
    return addresses


@dataclass
class GuardStats:
    """What the guard saw, for mapping a failed download to the right user error."""

    refusals: list[UserError] = field(default_factory=list)
    connections: list[tuple[str, int, str]] = field(default_factory=list)
    unreachable: list[tuple[str, int]] = field(default_factory=list)
    """Checked hosts the guard could not connect to: its 502 then is its own answer, not the site's."""
    bytes_in: int = 0
    timed_out: bool = False
    over_budget: bool = False


class GuardProxy:
    """An HTTP forward proxy on 127.0.0.1 that only connects to checked addresses.

    Use as a context manager; point yt-dlp's ``proxy`` option at `url`. Each client connection is served
    by a thread: the request head is read, the target is resolved and checked (`resolve_checked`), the
    connection is made to the checked address, and bytes are relayed. Plain HTTP requests are rewritten
    to origin form with ``Connection: close`` (one request per upstream connection keeps the accounting
    and the checks per request simple). After `deadline` (time.monotonic) or once `byte_budget` bytes
    have come in, open connections are cut and new ones refused.
    """

    def __init__(self, allow_hosts: Iterable[str], *, deadline: float, byte_budget: int,
                 resolver: Resolver = system_resolver, connector: Connector = direct_connector) -> None:
        self.allow_hosts = tuple(allow_hosts)
        self.deadline = deadline
        self.byte_budget = byte_budget
        self.stats = GuardStats()
        self._resolver = resolver
        self._connector = connector
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        assert self._listener is not None, "GuardProxy is not started"
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> GuardProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(MAX_CONNECTIONS)
        listener.settimeout(_POLL_SECONDS)
        self._listener = listener
        thread = threading.Thread(target=self._accept_loop, name="netguard-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)
        for thread in self._threads:
            thread.join(timeout=2.0)
        if self._listener is not None:
            self._listener.close()

    # -- bookkeeping -------------------------------------------------------------------------------------

    def _expired(self) -> bool:
        if time.monotonic() >= self.deadline:
            self.stats.timed_out = True
            return True
        return False

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        _close(sock)

    def _count_in(self, n: int) -> bool:
        """Add `n` downloaded bytes; False once the budget is spent."""
        with self._lock:
            self.stats.bytes_in += n
            if self.stats.bytes_in > self.byte_budget:
                self.stats.over_budget = True
                return False
        return True

    # -- serving -----------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                busy = len(self._sockets) >= 2 * MAX_CONNECTIONS
            if busy:
                _close(client)
                continue
            self._track(client)
            thread = threading.Thread(target=self._serve, args=(client,), name="netguard-conn", daemon=True)
            thread.start()
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            client.settimeout(CONNECT_TIMEOUT_SECONDS)
            head, rest = _read_head(client)
            if head is None:
                return
            request_line, _, header_block = head.partition(b"\r\n")
            try:
                method, target, _version = request_line.decode("latin-1").split(" ")
            except ValueError:
                _reply(client, 400, "malformed request line")
                return
            if method.upper() == "CONNECT":
                host, port = _split_host_port(target, default_port=443)
                upstream = self._open(client, host, port)
                if upstream is None:
                    return
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
                self._relay(client, upstream, rewrite_response=False)
                return
            parts = urlsplit(target)
            if parts.scheme.lower() != "http" or not parts.hostname:
                _reply(client, 400, "only absolute http:// requests are proxied")
                return
            if parts.username is not None or "@" in parts.netloc:
                self._refuse(client, FetchRefused(
                    "Links with a user name or password in them are not accepted."))
                return
            try:
                port = parts.port or 80
            except ValueError:
                _reply(client, 400, "bad port")
                return
            upstream = self._open(client, parts.hostname, port)
            if upstream is None:
                return
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            upstream.sendall(_rewrite_request(method, path, header_block, parts.netloc) + rest)
            self._relay(client, upstream, rewrite_response=True)
        except OSError as exc:
            log.debug("guard proxy connection ended: %s", exc)
        finally:
            if upstream is not None:
                self._untrack(upstream)
            self._untrack(client)

    def _refuse(self, client: socket.socket, error: UserError) -> None:
        with self._lock:
            self.stats.refusals.append(error)
        log.info("fetch guard refused a connection: %s", error)
        _reply(client, 403, str(error))

    def _open(self, client: socket.socket, host: str, port: int) -> socket.socket | None:
        """Resolve, check and connect; on refusal answer the client and return None."""
        if self._expired() or self._closed.is_set():
            _reply(client, 504, "time limit reached")
            return None
        try:
            addresses = resolve_checked(host, port, self.allow_hosts, self._resolver)
        except UserError as error:
            self._refuse(client, error)
            return None
        for address in addresses:
            try:
                upstream = self._connector(address, port, CONNECT_TIMEOUT_SECONDS)
            except OSError as exc:
                log.debug("guard proxy could not connect to %s:%d: %s", address, port, exc)
                continue
            self._track(upstream)
            with self._lock:
                self.stats.connections.append((normalise_host(host), port, str(address)))
            return upstream
        with self._lock:
            self.stats.unreachable.append((normalise_host(host), port))
        _reply(client, 502, "could not connect")
        return None

    def _relay(self, client: socket.socket, upstream: socket.socket, *, rewrite_response: bool) -> None:
        """Copy bytes both ways until upstream closes, the deadline passes or the budget is spent."""
        head = _ResponseHead() if rewrite_response else None
        with selectors.DefaultSelector() as selector:
            selector.register(upstream, selectors.EVENT_READ)
            selector.register(client, selectors.EVENT_READ)
            while not self._closed.is_set():
                if self._expired():
                    return
                for key, _ in selector.select(_POLL_SECONDS):
                    if key.fileobj is client:
                        data = client.recv(_BUFFER)
                        if data:
                            upstream.sendall(data)
                        else:
                            selector.unregister(client)
                            upstream.shutdown(socket.SHUT_WR)
                        continue
                    data = upstream.recv(_BUFFER)
                    if not data:
                        if head is not None:
                            client.sendall(head.flush())
                        return
                    if not self._count_in(len(data)):
                        return
                    if head is not None:
                        data = head.feed(data)
                        if head.too_large:
                            return
                    if data:
                        client.sendall(data)


class _ResponseHead:
    """Holds back an HTTP response head until it is complete, then forces ``Connection: close`` so the
    client never reuses a connection that the proxy will close."""

    def __init__(self) -> None:
        self._buffer: bytes | None = b""
        self.too_large = False

    def feed(self, data: bytes) -> bytes:
        if self._buffer is None:
            return data
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            self.too_large = len(self._buffer) > MAX_HEAD_BYTES
            return b""
        out = _rewrite_response_head(self._buffer[:end]) + self._buffer[end:]
        self._buffer = None
        return out

    def flush(self) -> bytes:
        out, self._buffer = self._buffer or b"", None
        return out

def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD_BYTES:
            _reply(sock, 431, "request head too large")
            return None, b""
        chunk = sock.recv(_BUFFER)
        if not chunk:
            return None, b""
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest


def _split_host_port(target: str, *, default_port: int) -> tuple[str, int]:
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = target.rpartition(":") if ":" in target else (target, "", "")
    return host, int(port) if port.isdigit() else default_port


def _rewrite_request(method: str, path: str, header_block: bytes, netloc: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode("latin-1")]
    has_host = False
    for line in header_block.split(b"\r\n"):
        name = line.split(b":", 1)[0].strip().lower().decode("latin-1")
        if not line or name in _HOP_HEADERS:
            continue
        has_host = has_host or name == "host"
        lines.append(line)
    if not has_host:
        lines.append(b"Host: " + netloc.encode("ascii", "replace"))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _rewrite_response_head(head: bytes) -> bytes:
    status, *headers = head.split(b"\r\n")
    kept = [h for h in headers if h.split(b":", 1)[0].strip().lower().decode("latin-1") not in _HOP_HEADERS]
    return b"\r\n".join([status, *kept, b"Connection: close"])


def _reply(sock: socket.socket, status: int, reason: str) -> None:
    body = (reason + "\n").encode("utf-8", "replace")
    titles = {400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large",
              502: "Bad Gateway", 504: "Gateway Timeout"}
    head = (f"HTTP/1.1 {status} {titles.get(status, 'Error')}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    try:
        sock.sendall(head.encode("latin-1") + body)
    except OSError:
        pass
