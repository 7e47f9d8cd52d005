"""SQLite persistence through aiosqlite: the only module that speaks SQL.

WAL mode (readers never block the writer), foreign keys on, every write in a transaction, and a tiny
migration runner over `migrations/NNNN_*.sql` that records what it applied in `schema_migrations`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import numpy as np

from core.config import PACKAGE_ROOT

log = logging.getLogger(__name__)

MIGRATIONS_DIR = PACKAGE_ROOT / "migrations"
MAX_ID = 2**63 - 1
"""SQLite's largest integer: Discord snowflakes and track ids beyond it cannot be stored or matched."""


def parse_id(text: object) -> int | None:
    """An id written as decimal digits (any script's, as `int` reads them) that SQLite can hold; None for
    anything else, so "²", "-1", "1e3" or forty nines are not taken for ids."""
    digits = str(text).strip()
    if not digits.isdecimal():
        return None
    value = int(digits)
    return value if value <= MAX_ID else None
_MIGRATION_NAME = re.compile(r"^(\d{4})_[\w-]+\.sql$")


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    found = []
    for path in directory.glob("*.sql"):
        match = _MIGRATION_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


@dataclass(frozen=True)
class TrackRow:
    """A library track as stored. `embedding` is None until the track has been analysed."""

    id: int
    guild_id: int
    source: str
    audio_path: str
    content_hash: str
    file_size: int | None
    file_mtime: float | None
    title: str
    artist: str | None
    duration: float | None
    status: str
    error: str | None
    analysis_version: str | None
    genre: str | None
    genre_confidence: float | None
    genre_probs: dict[str, float] | None
    mood: str | None
    mood_confidence: float | None
    mood_scores: dict[str, float] | None
    gems: dict[str, float] | None
    embedding: np.ndarray | None
    embedding_kind: str | None


_TRACK_COLUMNS = (
    "id, guild_id, source, audio_path, content_hash, file_size, file_mtime, title, artist, duration, status, "
    "error, analysis_version, genre, genre_confidence, genre_probs, mood, mood_confidence, mood_scores, gems, "
    "embedding, embedding_kind"
)


def _track(row: Sequence[Any]) -> TrackRow:
    values = list(row)
    for i in (15, 18, 19):  # JSON columns
        values[i] = json.loads(values[i]) if values[i] else None
    values[20] = np.frombuffer(values[20], dtype="<f4").copy() if values[20] else None
    return TrackRow(*values)


@dataclass(frozen=True)
class Analysis:
    """What an analysis writes onto a track."""

    duration: float
    analysis_version: str
    genre: str | None
    genre_confidence: float | None
    genre_probs: dict[str, float] | None
    mood: str | None
    mood_confidence: float | None
    mood_scores: dict[str, float] | None
    gems: dict[str, float] | None
    embedding: np.ndarray
    embedding_kind: str


class Store:
    """One connection per process; aiosqlite serialises its use on a background thread."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._write_lock = asyncio.Lock()  # one connection: transactions of concurrent tasks must not interleave
        self.applied: list[str] = []
        """Migrations applied when this store was opened."""

    @classmethod
    async def open(cls, path: Path, *, migrations_dir: Path = MIGRATIONS_DIR) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)  # we issue BEGIN/COMMIT ourselves
        store = cls(db, path)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=10000")
            await db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut, not only a crash
            store.applied = await store.migrate(migrations_dir)
        except BaseException:
            await db.close()  # aiosqlite's thread would otherwise keep the process alive
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    # -- migrations -------------------------------------------------------------------------------------
    async def schema_version(self) -> int:
        await self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
        )
        async with self._db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as cur:
            (version,) = await cur.fetchone()  # type: ignore[misc]
        return int(version)

    async def migrate(self, migrations_dir: Path = MIGRATIONS_DIR) -> list[str]:
        """Apply every migration newer than the recorded version, each in its own transaction."""
        current = await self.schema_version()
        applied = []
        for version, path in migration_files(migrations_dir):
            if version <= current:
                continue
            script = path.read_text(encoding="utf-8")
            # executescript commits on its own; wrap it so a failing migration leaves nothing behind.
            await self._db.executescript(
                f"BEGIN;\n{script}\nINSERT INTO schema_migrations (version, name) "
                f"VALUES ({version}, '{path.name}');\nCOMMIT;"
            )
            log.info("applied migration %s", path.name)
            applied.append(path.name)
        return applied

    # -- helpers ----------------------------------------------------------------------------------------
    async def _write(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> tuple[int, int]:
        """Run statements in one transaction; returns (the last inserted row id, rows changed)."""
        last = changed = 0
        async with self._write_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    cur = await self._db.execute(sql, params)
                    last = cur.lastrowid or last
                    changed += max(cur.rowcount, 0)
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
        return last, changed

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._db.execute(sql, params) as cur:
            return list(await cur.fetchall())

    @staticmethod
    def _ensure_people(guild_id: int, user_id: int | None) -> list[tuple[str, Sequence[Any]]]:
        out: list[tuple[str, Sequence[Any]]] = [("INSERT OR IGNORE INTO guilds (id) VALUES (?)", (guild_id,))]
        if user_id is not None:
            out.append(("INSERT OR IGNORE INTO users (id) VALUES (?)", (user_id,)))
        return out

    # -- tracks -----------------------------------------------------------------------------------------
    async def add_track(self, *, guild_id: int, source: str, audio_path: str, content_hash: str,
                        file_size: int | None, file_mtime: float | None, title: str, artist: str | None,
                        added_by: int | None) -> int:
        track_id, _ = await self._write([
            *self._ensure_people(guild_id, added_by),
            ("INSERT INTO tracks (guild_id, source, audio_path, content_hash, file_size, file_mtime, title, "
             "artist, added_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
             (guild_id, source, audio_path, content_hash, file_size, file_mtime, title, artist, added_by)),
        ])
        return track_id

    async def find_duplicate(self, guild_id: int, *, source: str, content_hash: str | None) -> TrackRow | None:
        rows = await self._all(
            f"SELECT {_TRACK_COLUMNS} FROM tracks WHERE guild_id = ? AND (source = ? OR content_hash = ?)",
            (guild_id, source, content_hash),
        )
        return _track(rows[0]) if rows else None

    async def track(self, guild_id: int, track_id: int) -> TrackRow | None:
        rows = await self._all(f"SELECT {_TRACK_COLUMNS} FROM tracks WHERE guild_id = ? AND id = ?",
                               (guild_id, track_id))
        return _track(rows[0]) if rows else None

    async def tracks(self, guild_id: int, *, status: str | None = None) -> list[TrackRow]:
        if status is None:
            rows = await self._all(f"SELECT {_TRACK_COLUMNS} FROM tracks WHERE guild_id = ? ORDER BY id",
                                   (guild_id,))
        else:
            rows = await self._all(
                f"SELECT {_TRACK_COLUMNS} FROM tracks WHERE guild_id = ? AND status = ? ORDER BY id",
                (guild_id, status))
        return [_track(r) for r in rows]

    async def search_titles(self, guild_id: int, text: str, *, limit: int) -> list[tuple[int, str]]:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = await self._all(
            "SELECT id, title FROM tracks WHERE guild_id = ? AND status = 'ready' AND title LIKE ? ESCAPE '\\' "
            "ORDER BY title LIMIT ?", (guild_id, pattern, limit))
        return [(int(r[0]), str(r[1])) for r in rows]

    async def save_analysis(self, track_id: int, analysis: Analysis, *, file_size: int | None,
                            file_mtime: float | None) -> None:
        def js(value: Any) -> str | None:
            return json.dumps(value) if value is not None else None

        await self._write([(
            "UPDATE tracks SET status = 'ready', error = NULL, analysed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),"
            " duration = ?, analysis_version = ?, genre = ?, genre_confidence = ?, genre_probs = ?, mood = ?, "
            "mood_confidence = ?, mood_scores = ?, gems = ?, embedding = ?, embedding_kind = ?, file_size = ?, "
            "file_mtime = ? WHERE id = ?",
            (analysis.duration, analysis.analysis_version, analysis.genre, analysis.genre_confidence,
             js(analysis.genre_probs), analysis.mood, analysis.mood_confidence, js(analysis.mood_scores),
             js(analysis.gems), np.asarray(analysis.embedding, dtype="<f4").tobytes(), analysis.embedding_kind,
             file_size, file_mtime, track_id),
        )])

    async def mark_failed(self, track_id: int, error: str) -> None:
        await self._write([("UPDATE tracks SET status = 'failed', error = ? WHERE id = ?", (error, track_id))])

    async def remove_track(self, guild_id: int, track_id: int) -> bool:
        _, changed = await self._write([("DELETE FROM tracks WHERE guild_id = ? AND id = ?", (guild_id, track_id))])
        return changed > 0

    async def track_counts(self, guild_id: int) -> dict[str, int]:
        rows = await self._all("SELECT status, COUNT(*) FROM tracks WHERE guild_id = ? GROUP BY status",
                               (guild_id,))
        return {str(status): int(n) for status, n in rows}

    # -- people's signals -------------------------------------------------------------------------------
    async def add_tag(self, guild_id: int, user_id: int, track_id: int, mood: str) -> None:
        await self._write([
            *self._ensure_people(guild_id, user_id),
            ("INSERT OR IGNORE INTO mood_tags (guild_id, user_id, track_id, mood) VALUES (?, ?, ?, ?)",
             (guild_id, user_id, track_id, mood)),
            ("INSERT INTO history (guild_id, user_id, kind, track_id, detail) VALUES (?, ?, 'tag', ?, ?)",
             (guild_id, user_id, track_id, mood)),
        ])

    async def tags(self, guild_id: int) -> list[tuple[int, int, str]]:
        """(user_id, track_id, mood) for every tag in the guild."""
        rows = await self._all("SELECT user_id, track_id, mood FROM mood_tags WHERE guild_id = ?", (guild_id,))
        return [(int(u), int(t), str(m)) for u, t, m in rows]

    async def set_feedback(self, guild_id: int, user_id: int, track_id: int, value: int) -> None:
        await self._write([
            *self._ensure_people(guild_id, user_id),
            ("INSERT INTO feedback (guild_id, user_id, track_id, value) VALUES (?, ?, ?, ?) "
             "ON CONFLICT (user_id, track_id) DO UPDATE SET value = excluded.value, "
             "created_at = excluded.created_at", (guild_id, user_id, track_id, value)),
            ("INSERT INTO history (guild_id, user_id, kind, track_id, detail) VALUES (?, ?, 'feedback', ?, ?)",
             (guild_id, user_id, track_id, "up" if value > 0 else "down")),
        ])

    async def feedback(self, guild_id: int, user_id: int) -> dict[int, int]:
        rows = await self._all("SELECT track_id, value FROM feedback WHERE guild_id = ? AND user_id = ?",
                               (guild_id, user_id))
        return {int(t): int(v) for t, v in rows}

    async def log_history(self, guild_id: int, user_id: int, kind: str,
                          entries: Sequence[tuple[int | None, str]]) -> None:
        await self._write([
            *self._ensure_people(guild_id, user_id),
            *(("INSERT INTO history (guild_id, user_id, kind, track_id, detail) VALUES (?, ?, ?, ?, ?)",
               (guild_id, user_id, kind, track_id, detail)) for track_id, detail in entries),
        ])

    async def history(self, guild_id: int, user_id: int, *, limit: int,
                      kinds: Sequence[str] | None = None) -> list[tuple[str, str, int | None, str, str | None]]:
        """(created_at, kind, track_id, detail, track title) newest first."""
        kind_filter = ""
        params: list[Any] = [guild_id, user_id]
        if kinds:
            kind_filter = f" AND h.kind IN ({', '.join('?' for _ in kinds)})"
            params.extend(kinds)
        params.append(limit)
        rows = await self._all(
            "SELECT h.created_at, h.kind, h.track_id, h.detail, t.title FROM history h "
            "LEFT JOIN tracks t ON t.id = h.track_id "
            f"WHERE h.guild_id = ? AND h.user_id = ?{kind_filter} ORDER BY h.id DESC LIMIT ?", params)
        return [(str(a), str(k), None if t is None else int(t), str(d), ti) for a, k, t, d, ti in rows]

    async def forget_user(self, guild_id: int, user_id: int) -> int:
        """Delete the user's tags, feedback and history in this guild, the mark of who added which track,
        and the user row itself once no guild holds anything of theirs; returns how many rows changed."""
        _, changed = await self._write([
            ("DELETE FROM mood_tags WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)),
            ("DELETE FROM feedback WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)),
            ("DELETE FROM history WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)),
            ("UPDATE tracks SET added_by = NULL WHERE guild_id = ? AND added_by = ?", (guild_id, user_id)),
            ("DELETE FROM users WHERE id = ? AND NOT EXISTS (SELECT 1 FROM mood_tags WHERE user_id = ?) "
             "AND NOT EXISTS (SELECT 1 FROM feedback WHERE user_id = ?) "
             "AND NOT EXISTS (SELECT 1 FROM history WHERE user_id = ?) "
             "AND NOT EXISTS (SELECT 1 FROM tracks WHERE added_by = ?)",
             (user_id, user_id, user_id, user_id, user_id)),
        ])
        return changed

    async def integrity_ok(self) -> bool:
        rows = await self._all("PRAGMA integrity_check")
        return len(rows) == 1 and rows[0][0] == "ok"
