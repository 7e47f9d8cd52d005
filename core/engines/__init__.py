"""The database engines under `core.store`: SQLite (one machine, the default) and PostgreSQL (many).

`core.store` writes its repository functions once, in SQL both engines accept (`?` placeholders,
`ON CONFLICT`, `RETURNING`); an engine runs it: reads, multi-statement transactions, its own migration
files under the shared version numbers, a cross-process lock and an integrity check. Nothing outside
`core.store` and this package speaks SQL.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

Statement = tuple[str, Sequence[Any]]
Result = tuple[list[tuple[Any, ...]], int]
"""What one statement of a transaction gave: the rows it returned (RETURNING) and how many rows it changed."""

_MIGRATION_NAME = re.compile(r"^(\d{4})_[\w-]+\.sql$")


class ConstraintViolation(Exception):
    """A write broke a constraint (unique, foreign key, check): the same exception whatever the engine."""


def migration_files(directory: Path) -> list[tuple[int, Path]]:
    """`NNNN_name.sql` files in `directory`, by version."""
    found = []
    for path in directory.glob("*.sql"):
        match = _MIGRATION_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


class Engine(ABC):
    """One open database. Implementations are safe to share between the tasks of one event loop."""

    name: str
    migrations_subdir: str
    """Where this engine's migration files live below the migrations folder ("" for the folder itself)."""

    @abstractmethod
    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read."""

    @abstractmethod
    async def transaction(self, statements: Sequence[Statement]) -> list[Result]:
        """Run the statements in one transaction: all of them commit, or (on any error) none."""

    @abstractmethod
    async def migrate(self, migrations_dir: Path) -> list[str]:
        """Apply every migration newer than the recorded version, all in one transaction that first takes
        the database's write lock and only then reads the version; returns the names applied. Processes
        starting at once take turns: one applies, the others find nothing left to do. A failing migration
        leaves the database at the version it had."""

    @abstractmethod
    async def schema_version(self) -> int: ...

    @abstractmethod
    def try_lock(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Hold the lock `name` across every process using this database for the block, if it is free
        (yields True) or not at all (yields False). The lock goes when its holder's process dies."""

    @abstractmethod
    async def integrity_ok(self) -> bool: ...

    @abstractmethod
    async def close(self) -> None: ...

    def migration_dir(self, migrations_dir: Path) -> Path:
        return migrations_dir / self.migrations_subdir if self.migrations_subdir else migrations_dir
