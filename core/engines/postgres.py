"""PostgreSQL through asyncpg: the engine for deployments of several processes and machines.

asyncpg rather than psycopg 3: it is asyncio-native end to end (no thread hop per query), ships its own
connection pool, and speaks the binary protocol, so embeddings (BYTEA) and snowflakes (BIGINT) cross
without text conversions. Its `$n` placeholders are made from the store's `?` ones here, once per query.

Each transaction takes a pooled connection; the cross-process lock is a session advisory lock held on a
connection of its own, so PostgreSQL releases it the moment its holder's connection or process dies.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from core.config import redact
from core.engines import ConstraintViolation, Engine, Result, Statement, migration_files
from core.errors import StoreUnavailable

log = logging.getLogger(__name__)

POOL_SIZE = 10
"""Connections per process: reads and writes of concurrent requests; a lock holds one more of its own."""
_MIGRATION_LOCK = "cratedigger:migrations"
_NOW = "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"


def placeholders(sql: str) -> str:
    """`?` -> `$1`, `$2`, ... outside quoted literals and identifiers."""
    out: list[str] = []
    quote: str | None = None
    n = 0
    for char in sql:
        if quote is not None:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "?":
            n += 1
            out.append(f"${n}")
            continue
        out.append(char)
    return "".join(out)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a lock name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


UNREACHABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError,
               asyncpg.InternalClientError)
"""What asyncpg raises while the server is away: refused or dropped connections, "the database system is
starting up" (or shutting down, or in recovery), and the state error of a pooled connection that broke
mid-query; and, from `_reachable`, the interface error of a transaction ending on a closed connection. The pool replaces broken connections by itself, so the next request finds the server again."""


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    """Turn the server being away into StoreUnavailable, a one-line answer for the member."""
    try:
        yield
    except (*UNREACHABLE, asyncpg.InterfaceError) as exc:
        if isinstance(exc, asyncpg.InterfaceError) and "connection is closed" not in str(exc):
            raise  # misuse of a live connection: a bug, not an outage
        log.warning("PostgreSQL is unreachable: %s: %s", type(exc).__name__, exc)
        raise StoreUnavailable("I can't reach my database right now; try again in a minute.") from exc


def _changed(status: str) -> int:
    """Rows changed, from a command tag such as 'UPDATE 3' or 'INSERT 0 1'."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresEngine(Engine):
    name = "postgresql"
    migrations_subdir = "postgresql"

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self._pool = pool
        self._url = url

    @classmethod
    async def open(cls, url: str) -> PostgresEngine:
        log.info("connecting to PostgreSQL at %s", redact(url))
        pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE,
                                         server_settings={"application_name": "cratedigger"})
        return cls(pool, url)

    async def close(self) -> None:
        await self._pool.close()

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with _reachable():
            rows = await self._pool.fetch(placeholders(sql), *params)
        return [tuple(row) for row in rows]

    async def transaction(self, statements: Sequence[Statement]) -> list[Result]:
        results: list[Result] = []
        try:
            with _reachable():
                async with self._pool.acquire() as conn, conn.transaction():
                    for sql, params in statements:
                        if "RETURNING" in sql:
                            rows = [tuple(r) for r in await conn.fetch(placeholders(sql), *params)]
                            results.append((rows, len(rows)))
                        else:
                            results.append(([], _changed(await conn.execute(placeholders(sql), *params))))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise ConstraintViolation(str(exc)) from exc
        return results

    async def schema_version(self) -> int:
        async with self._pool.acquire() as conn:
            if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
                return 0  # never migrated
            return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))

    async def migrate(self, migrations_dir: Path) -> list[str]:
        """The transaction that applies the migrations first takes an advisory lock (held until it commits
        or rolls back, or its connection dies), then reads the version: of processes starting together one
        applies them, the others wait on the lock and then find them recorded. Even the migrations table is
        created under the lock: two concurrent CREATE TABLE IF NOT EXISTS can both go ahead, and one then
        fails on PostgreSQL's catalogue."""
        found = migration_files(self.migration_dir(migrations_dir))
        applied = []
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(_MIGRATION_LOCK))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                f"name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT ({_NOW}))")
            current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            for version, path in found:
                if version <= current:
                    continue
                await conn.execute(path.read_text(encoding="utf-8"))
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                   version, path.name)
                applied.append(path.name)
        for name in applied:
            log.info("applied migration %s", name)
        return applied

    @contextlib.asynccontextmanager
    async def try_lock(self, name: str) -> AsyncIterator[bool]:
        with _reachable():
            conn = await asyncpg.connect(self._url, server_settings={"application_name": "cratedigger-lock"})
        try:
            with _reachable():
                held = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(name)))
            yield held
        finally:
            await conn.close()  # ends the session, and with it the lock

    async def integrity_ok(self) -> bool:
        """amcheck over every B-tree index of our schema (heap tuples included); PostgreSQL has no
        whole-database check like SQLite's. Needs the amcheck extension (CREATE EXTENSION amcheck)."""
        async with self._pool.acquire() as conn:
            if not await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'"):
                raise RuntimeError("the integrity check needs PostgreSQL's amcheck extension: "
                                   "CREATE EXTENSION amcheck;")
            indexes = await conn.fetch(
                "SELECT c.oid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE a.amname = 'btree' AND n.nspname = current_schema()")
            for row in indexes:
                try:
                    await conn.execute("SELECT bt_index_check(index => $1::oid::regclass, heapallindexed => true)", row[0])
                except asyncpg.PostgresError as exc:
                    log.error("index check failed: %s", exc)
                    return False
        return True
