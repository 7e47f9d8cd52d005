"""Real PostgreSQL and Redis servers for the tests, started on loopback ports and stopped afterwards.

Registered as a pytest plugin. `postgres` and `redis` are session fixtures (one server each per run);
`pg_url` and `redis_url` give each test a fresh database. Without Debian's `postgresql` / `redis-server`
installed, the tests that need them skip with the reason on a developer's machine, and fail under CI
(`CI=true`), where `.ci/run` installs both.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_USER = "cratedigger"
PG_PASSWORD = "pg-s3cret-never-logged"
REDIS_PASSWORD = "redis-s3cret-never-logged"
_databases = itertools.count()


def missing(what: str) -> None:
    """Skip (a developer's machine) or fail (CI) a test whose server is not installed."""
    reason = f"{what} is not installed: apt-get install postgresql redis-server (.ci/run does it)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason}; CI runs the deployment tests, it never skips them")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")


def _wait_for_postgres(bin_dir: Path, port: int, proc: subprocess.Popen[bytes],
                       timeout: float = 120.0) -> None:
    """Until the server accepts sessions: it listens on its port while still starting up, and refuses a
    connection then ("the database system is starting up"), so a listening port is not enough."""
    _wait_for_port(port, proc, "PostgreSQL", timeout)
    deadline = time.monotonic() + timeout  # only against a server that never comes up
    while subprocess.run([str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode:
        if proc.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited with {proc.returncode} while starting up")
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not accept connections within {timeout:.0f} s")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def postgres_bin() -> Path | None:
    """Debian keeps initdb and postgres under /usr/lib/postgresql/NN/bin, not on PATH."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


@dataclass
class Postgres:
    bin: Path
    port: int
    run_as: dict[str, int]
    home: Path | None = None

    def url(self, database: str) -> str:
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> None:
        done = subprocess.run([str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                               "-p", str(self.port), "-U", PG_USER, "-d", database, "-c", sql],
                              env={**os.environ, "PGPASSWORD": PG_PASSWORD}, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"psql {sql!r} failed ({done.returncode}): {done.stderr.strip()}")

    def new_database(self) -> str:
        """A fresh, empty database (with amcheck, for the integrity check); returns its URL."""
        name = f"t{os.getpid()}_{next(_databases)}"
        self.psql(f"CREATE DATABASE {name}")
        self.psql("CREATE EXTENSION amcheck", database=name)
        return self.url(name)


def init_postgres(home: Path) -> Postgres:
    """A new cluster in `home/data` (owned by Debian's postgres account when we are root, as the server
    refuses to run as root), with a free port chosen; not started."""
    bin_dir = postgres_bin()
    if bin_dir is None or not (bin_dir / "postgres").exists():
        missing("PostgreSQL")
    assert bin_dir is not None
    run_as: dict[str, int] = {}
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        run_as = {"user": account.pw_uid, "group": account.pw_gid}
        os.chown(home, account.pw_uid, account.pw_gid)
    pwfile = home / "pw"
    pwfile.write_text(PG_PASSWORD)
    if run_as:
        os.chown(pwfile, run_as["user"], run_as["group"])
    subprocess.run([str(bin_dir / "initdb"), "-D", str(home / "data"), "-U", PG_USER, f"--pwfile={pwfile}",
                    "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"],
                   check=True, capture_output=True, **run_as)  # type: ignore[call-overload]
    return Postgres(bin_dir, free_port(), run_as, home)


def start_postgres(pg: Postgres, *, durable: bool = False) -> subprocess.Popen[bytes]:
    """The postmaster of `pg`, once it listens, in a session of its own: its backends share its process
    group, so killing the group is killing the server. `durable` keeps fsync on (a killed server then
    recovers from its write-ahead log as in production); the tests turn it off for speed."""
    assert pg.home is not None
    speed = [] if durable else ["-c", "fsync=off", "-c", "full_page_writes=off"]
    proc = subprocess.Popen(
        [str(pg.bin / "postgres"), "-D", str(pg.home / "data"), "-p", str(pg.port), "-h", "127.0.0.1",
         "-k", str(pg.home), *speed, "-c", "max_connections=200"],
        stdout=subprocess.DEVNULL, stderr=open(pg.home / "server.log", "ab"), start_new_session=True,
        **pg.run_as)  # type: ignore[call-overload]
    return _once_ready(proc, lambda: _wait_for_postgres(pg.bin, pg.port, proc))


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    home = Path(tempfile.mkdtemp(prefix="cratedigger-pg-"))
    pg = init_postgres(home)
    proc = start_postgres(pg)
    try:
        yield pg
    finally:
        _stop(proc, signal.SIGINT)  # "fast" shutdown
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    return postgres.new_database()


@dataclass
class Redis:
    port: int

    def url(self, db: int = 0) -> str:
        return f"redis://:{REDIS_PASSWORD}@127.0.0.1:{self.port}/{db}"

    def flush(self) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, password=REDIS_PASSWORD)
        try:
            client.flushall()
        finally:
            client.close()


def start_redis(home: Path, port: int) -> subprocess.Popen[bytes]:
    """redis-server on a loopback port, without persistence (a restart starts it empty), once it listens."""
    exe = shutil.which("redis-server")
    if exe is None:
        missing("Redis")
    proc = subprocess.Popen([str(exe), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(home),
                             "--save", "", "--appendonly", "no", "--requirepass", REDIS_PASSWORD],
                            stdout=open(home / "server.log", "ab"), stderr=subprocess.STDOUT)
    return _once_ready(proc, lambda: _wait_for_port(port, proc, "Redis"))


def _once_ready(proc: subprocess.Popen[bytes], wait: Callable[[], None]) -> subprocess.Popen[bytes]:
    """`proc` once `wait()` returns; stopped (never left running) when waiting fails or is interrupted."""
    try:
        wait()
    except BaseException:
        _stop(proc)
        raise
    return proc


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    home = Path(tempfile.mkdtemp(prefix="cratedigger-redis-"))
    port = free_port()
    proc = start_redis(home, port)
    try:
        yield Redis(port)
    finally:
        _stop(proc)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: Redis) -> str:
    """The server emptied: a test starts with no queued jobs or results of another."""
    redis_server.flush()
    return redis_server.url()
