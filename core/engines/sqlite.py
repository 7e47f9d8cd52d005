"""SQLite through aiosqlite: the single-machine engine.

WAL mode (readers never block the writer), foreign keys on, `synchronous=FULL`, and every write
transaction `BEGIN IMMEDIATE` on the one connection, behind a lock so concurrent tasks cannot interleave
their statements.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from core.engines import ConstraintViolation, Engine, Result, Statement, migration_files

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
"""How long a statement waits for another connection's write lock before "database is locked"."""
MIGRATION_LOCK = "migrations"


def script_statements(script: str) -> list[str]:
    """An SQL script cut into its statements at the semicolons SQLite itself says end one (not those inside
    a string, a comment or a trigger body); a last statement may omit its semicolon."""
    *pieces, last = script.split(";")
    statements, pending = [], ""
    for piece in pieces:
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statements.append(pending)
            pending = ""
    if (pending + last).strip():  # a last statement without its semicolon, or text SQLite will refuse
        statements.append(pending + last)
    return statements


class SQLiteEngine(Engine):
    name = "sqlite"
    migrations_subdir = ""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SQLiteEngine:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)  # we issue BEGIN/COMMIT ourselves
        engine = cls(db, path)
        try:
            await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # Switching a new file to WAL needs the file to itself, and two connections that both read it
            # and then both ask for it get "database is locked" at once, busy timeout or not (SQLite's
            # deadlock rule): 1 of 8 processes starting together on a fresh file did, under two CPU hogs.
            # So the switch queues on the same flock as the migrations.
            async with engine._held(MIGRATION_LOCK):
                await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut, not only a crash
        except BaseException:
            await db.close()  # aiosqlite's thread would otherwise keep the process alive
            raise
        return engine

    async def close(self) -> None:
        await self._db.close()

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._db.execute(sql, params) as cur:
            return [tuple(row) for row in await cur.fetchall()]

    @contextlib.asynccontextmanager
    async def _immediate(self) -> AsyncIterator[None]:
        """One write transaction. `BEGIN IMMEDIATE` takes SQLite's write lock before the first read, so
        what the block reads no other process can change before it commits (a deferred BEGIN would read
        first and find out only at its first write)."""
        async with self._write_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise

    async def transaction(self, statements: Sequence[Statement]) -> list[Result]:
        results: list[Result] = []
        try:
            async with self._immediate():
                for sql, params in statements:
                    async with self._db.execute(sql, params) as cur:
                        rows = [tuple(row) for row in await cur.fetchall()]
                        results.append((rows, max(cur.rowcount, 0)))
        except sqlite3.IntegrityError as exc:
            raise ConstraintViolation(str(exc)) from exc
        return results

    async def schema_version(self) -> int:
        if not await self.fetch("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                "AND name = 'schema_migrations'"):
            return 0  # never migrated
        (version,), = await self.fetch("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        return int(version)

    async def migrate(self, migrations_dir: Path) -> list[str]:
        """The version is read inside the IMMEDIATE transaction that applies the migrations, so of processes
        starting together exactly one applies them and the others then find them recorded. Statements go one
        by one through `execute`: sqlite3's `executescript` would COMMIT the open transaction before it runs.

        The processes queue first on a blocking flock beside the database, as PostgreSQL's advisory lock
        queues them, and only then on SQLite's write lock. Queued on the write lock alone each waited at most
        the busy timeout, retrying at intervals in no order, and with 8 processes starting together on a
        loaded machine (two CPU hogs) one failed "database is locked" (1 round in 120 of
        test_processes_starting_together_migrate_once). Waiting for another process's migration is no
        error, however long that migration takes."""
        found = migration_files(self.migration_dir(migrations_dir))
        applied = []
        async with self._held(MIGRATION_LOCK), self._immediate():
            await self._db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))")
            (current,), = await self.fetch("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            for version, path in found:
                if version <= current:
                    continue
                for statement in script_statements(path.read_text(encoding="utf-8")):
                    await self._db.execute(statement)
                await self._db.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                                       (version, path.name))
                applied.append(path.name)
        for name in applied:
            log.info("applied migration %s", name)
        return applied

    def lock_path(self, name: str) -> Path:
        """The file whose flock is the cross-process lock `name` (try_lock, migrations)."""
        folder = self.path.parent / "locks"
        folder.mkdir(exist_ok=True)
        return folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.lock"

    @contextlib.asynccontextmanager
    async def _held(self, name: str) -> AsyncIterator[None]:
        """The lock `name`, waited for as long as its holder keeps it (in a thread: the loop goes on)."""
        fd = os.open(self.lock_path(name), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @contextlib.asynccontextmanager
    async def try_lock(self, name: str) -> AsyncIterator[bool]:
        """An flock on a file beside the database: the kernel drops it when the holder's process dies. All
        processes of a SQLite deployment share that file system (SQLite's own locks are fcntl locks too)."""
        fd = os.open(self.lock_path(name), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    async def integrity_ok(self) -> bool:
        rows = await self.fetch("PRAGMA integrity_check")
        return len(rows) == 1 and rows[0][0] == "ok"
