"""Persistence: the repository functions, the only place (with the engines in `core.engines`) that speaks SQL.

One SQL text for both engines, SQLite (the default, a file in the data folder) and PostgreSQL
(`CRATEDIGGER_DATABASE_URL`): `?` placeholders, `ON CONFLICT`, `RETURNING`, timestamps written by us. Foreign
keys are on, every write is one transaction, and numbered migrations (`migrations/NNNN_*.sql` for SQLite,
`migrations/postgresql/NNNN_*.sql` under the same numbers) are applied at open and recorded in
`schema_migrations`.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import PACKAGE_ROOT, Settings
from core.engines import ConstraintViolation, Engine, Result, Statement
from core.engines import migration_files as _migration_files
from core.frontend import TAG_COUNT

log = logging.getLogger(__name__)

__all__ = ["Analysis", "ConstraintViolation", "MAX_ID", "Store", "TrackRow", "migration_files", "parse_id"]

MIGRATIONS_DIR = PACKAGE_ROOT / "migrations"
MAX_ID = 2**63 - 1
"""SQLite's and PostgreSQL's (BIGINT) largest integer: Discord snowflakes and track ids beyond it cannot be
stored or matched."""
LOCK_POLL_SECONDS = 0.5
IDS_PER_QUERY = 500
"""Ids bound in one `IN (...)` list: far below SQLite's 32 766 and PostgreSQL's 32 767 parameters."""


def parse_id(text: object) -> int | None:
    """An id written as decimal digits (any script's, as `int` reads them) that the store can hold; None for
    anything else, so "²", "-1", "1e3" or forty nines are not taken for ids."""
    digits = str(text).strip()
    if not digits.isdecimal():
        return None
    value = int(digits)
    return value if value <= MAX_ID else None


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    """The SQLite migrations (PostgreSQL's are in `directory / "postgresql"` under the same numbers)."""
    return _migration_files(directory)


def now_text() -> str:
    """UTC now as the schema's timestamp columns hold it (ISO 8601, milliseconds, Z)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def _text_safe(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL; both engines store it as U+FFFD so they keep the same data."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


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
    segment_embeddings: np.ndarray | None = None
    """(n, 200) the front-end's embedding of each analysed segment; None for tracks analysed before they
    were kept (until their next reindex)."""
    segment_tags: np.ndarray | None = None
    """(n, 50) the front-end's tag probabilities of each analysed segment."""
    segment_starts: np.ndarray | None = None
    """(n,) where each analysed segment starts, in seconds of the trimmed track."""
    fingerprint: np.ndarray | None = None
    """(n, 2) uint32 landmarks of the analysed sections (core.fingerprint); None for tracks analysed before
    fingerprints were kept (until their next reindex)."""

    @property
    def indexed_vectors(self) -> np.ndarray | None:
        """What the segment-level index holds for this track: its segments' embeddings, or its one track
        vector when it was analysed before segments were kept (until its next reindex)."""
        return self.segment_embeddings if self.segment_embeddings is not None else self.embedding


_TRACK_COLUMNS = (
    "id, guild_id, source, audio_path, content_hash, file_size, file_mtime, title, artist, duration, status, "
    "error, analysis_version, genre, genre_confidence, genre_probs, mood, mood_confidence, mood_scores, gems, "
    "embedding, embedding_kind, segment_embeddings, segment_tags, segment_starts, fingerprint"
)


def _floats(blob: bytes | None, width: int | None = None) -> np.ndarray | None:
    """A float32 little-endian blob as an array ((n, width) when `width`), or None."""
    if not blob:
        return None
    flat = np.frombuffer(blob, dtype="<f4").copy()
    return flat if width is None else flat.reshape(-1, width)


def _blob(array: np.ndarray | None) -> bytes | None:
    return None if array is None else np.asarray(array, dtype="<f4").tobytes()


def _landmarks(blob: bytes | None) -> np.ndarray | None:
    """A fingerprint blob (uint32 little-endian (hash, frame) pairs) as an (n, 2) array, or None."""
    if blob is None:
        return None
    return np.frombuffer(blob, dtype="<u4").astype(np.uint32).reshape(-1, 2)


def _landmark_blob(landmarks: np.ndarray | None) -> bytes | None:
    return None if landmarks is None else np.asarray(landmarks, dtype="<u4").tobytes()


def _track(row: Sequence[Any]) -> TrackRow:
    values = list(row)
    for i in (15, 18, 19):  # JSON columns
        values[i] = json.loads(values[i]) if values[i] else None
    values[20] = _floats(values[20])
    embedding_dim = values[20].size if values[20] is not None else None
    values[22] = _floats(values[22], embedding_dim)
    values[23] = _floats(values[23], TAG_COUNT)
    values[24] = _floats(values[24])
    values[25] = _landmarks(values[25])
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
    segment_embeddings: np.ndarray | None = None
    segment_tags: np.ndarray | None = None
    segment_starts: np.ndarray | None = None
    fingerprint: np.ndarray | None = None


class Store:
    """The repository over one engine; open with `Store.connect(settings)` (or `Store.open(path)` for a
    SQLite file). Safe to share between the tasks of one event loop."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.applied: list[str] = []
        """Migrations applied when this store was opened."""

    @classmethod
    async def open(cls, path: Path, *, migrations_dir: Path = MIGRATIONS_DIR) -> Store:
        """A SQLite file."""
        from core.engines.sqlite import SQLiteEngine

        return await cls._migrated(await SQLiteEngine.open(path), migrations_dir)

    @classmethod
    async def open_url(cls, url: str, *, migrations_dir: Path = MIGRATIONS_DIR) -> Store:
        """A PostgreSQL database (`postgresql://user:password@host:port/name`)."""
        from core.engines.postgres import PostgresEngine

        return await cls._migrated(await PostgresEngine.open(url), migrations_dir)

    @classmethod
    async def connect(cls, settings: Settings, *, migrations_dir: Path = MIGRATIONS_DIR) -> Store:
        """The database the settings name: PostgreSQL when CRATEDIGGER_DATABASE_URL is set, else the SQLite
        file in the data folder."""
        url = settings.database_url.strip()
        if not url:
            return await cls.open(settings.db_path, migrations_dir=migrations_dir)
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("CRATEDIGGER_DATABASE_URL must be a postgresql:// URL (empty: SQLite in the data "
                             "folder)")
        return await cls.open_url(url, migrations_dir=migrations_dir)

    @classmethod
    async def _migrated(cls, engine: Engine, migrations_dir: Path) -> Store:
        store = cls(engine)
        try:
            store.applied = await engine.migrate(migrations_dir)
        except BaseException:
            await engine.close()
            raise
        return store

    @property
    def engine_name(self) -> str:
        return self.engine.name

    async def close(self) -> None:
        await self.engine.close()

    # -- migrations -------------------------------------------------------------------------------------
    async def schema_version(self) -> int:
        return await self.engine.schema_version()

    async def migrate(self, migrations_dir: Path = MIGRATIONS_DIR) -> list[str]:
        """Apply every migration newer than the recorded version in one transaction (`Engine.migrate`)."""
        return await self.engine.migrate(migrations_dir)

    # -- helpers ----------------------------------------------------------------------------------------
    async def _write(self, statements: Iterable[Statement]) -> list[Result]:
        """Run statements in one transaction; per statement, the rows it returned and the rows it changed."""
        return await self.engine.transaction(
            [(sql, tuple(_text_safe(v) for v in params)) for sql, params in statements])

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self.engine.fetch(sql, tuple(_text_safe(v) for v in params))

    @staticmethod
    def _ensure_people(guild_id: int, user_id: int | None) -> list[Statement]:
        out: list[Statement] = [("INSERT INTO guilds (id) VALUES (?) ON CONFLICT DO NOTHING", (guild_id,))]
        if user_id is not None:
            out.append(("INSERT INTO users (id) VALUES (?) ON CONFLICT DO NOTHING", (user_id,)))
        return out

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str, *, wait: bool) -> AsyncIterator[bool]:
        """Hold the lock `name` across every process on this database for the block. `wait=False` yields
        False at once when another process holds it; `wait=True` polls until it is free. A dead holder's
        lock is released by its engine (an ended PostgreSQL session, a closed file descriptor)."""
        while True:
            async with self.engine.try_lock(name) as held:
                if held or not wait:
                    yield held
                    return
            await asyncio.sleep(LOCK_POLL_SECONDS)

    # -- tracks -----------------------------------------------------------------------------------------
    async def add_track(self, *, guild_id: int, source: str, audio_path: str, content_hash: str,
                        file_size: int | None, file_mtime: float | None, title: str, artist: str | None,
                        added_by: int | None) -> int:
        *_, (rows, _) = await self._write([
            *self._ensure_people(guild_id, added_by),
            ("INSERT INTO tracks (guild_id, source, audio_path, content_hash, file_size, file_mtime, title, "
             "artist, added_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
             (guild_id, source, audio_path, content_hash, file_size, file_mtime, title, artist, added_by)),
        ])
        return int(rows[0][0])

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

    async def tracks_by_id(self, guild_id: int, track_ids: Iterable[int], *,
                           status: str | None = None) -> list[TrackRow]:
        """The guild's tracks among `track_ids` (with `status`, when given) in id order; ids that are not
        the guild's, or no longer exist, are left out. A /similar query needs its index candidates' rows,
        not the library's: each row carries its segment vectors and fingerprint (~39 KiB)."""
        ids = sorted({int(t) for t in track_ids})
        where = "guild_id = ?" + (" AND status = ?" if status is not None else "")
        fixed = (guild_id, status) if status is not None else (guild_id,)
        out: list[TrackRow] = []
        for start in range(0, len(ids), IDS_PER_QUERY):
            batch = ids[start:start + IDS_PER_QUERY]
            rows = await self._all(
                f"SELECT {_TRACK_COLUMNS} FROM tracks WHERE {where} AND id IN ({', '.join('?' * len(batch))}) "
                "ORDER BY id", (*fixed, *batch))
            out.extend(_track(r) for r in rows)
        return out

    async def ready_segment_tags(self, guild_id: int) -> list[np.ndarray | None]:
        """Each ready track's (segments, 50) tag probabilities (None for a track analysed before they were
        kept), and nothing else of the rows: what the library's tag profile (core.similar) is made of."""
        rows = await self._all("SELECT segment_tags FROM tracks WHERE guild_id = ? AND status = 'ready' "
                               "ORDER BY id", (guild_id,))
        return [_floats(blob, TAG_COUNT) for blob, in rows]

    async def search_titles(self, guild_id: int, text: str, *, limit: int) -> list[tuple[int, str]]:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = await self._all(
            "SELECT id, title FROM tracks WHERE guild_id = ? AND status = 'ready' "
            "AND LOWER(title) LIKE LOWER(?) ESCAPE '\\' "
            "ORDER BY title LIMIT ?", (guild_id, pattern, limit))
        return [(int(r[0]), str(r[1])) for r in rows]

    async def save_analysis(self, track_id: int, analysis: Analysis, *, file_size: int | None,
                            file_mtime: float | None) -> None:
        def js(value: Any) -> str | None:
            return json.dumps(value) if value is not None else None

        await self._write([(
            "UPDATE tracks SET status = 'ready', error = NULL, analysed_at = ?, duration = ?, analysis_version = ?, genre = ?, genre_confidence = ?, genre_probs = ?, mood = ?, "
            "mood_confidence = ?, mood_scores = ?, gems = ?, embedding = ?, embedding_kind = ?, "
            "segment_embeddings = ?, segment_tags = ?, segment_starts = ?, fingerprint = ?, file_size = ?, "
            "file_mtime = ? WHERE id = ?",
            (now_text(), analysis.duration, analysis.analysis_version, analysis.genre, analysis.genre_confidence,
             js(analysis.genre_probs), analysis.mood, analysis.mood_confidence, js(analysis.mood_scores),
             js(analysis.gems), _blob(analysis.embedding), analysis.embedding_kind,
             _blob(analysis.segment_embeddings), _blob(analysis.segment_tags), _blob(analysis.segment_starts),
             _landmark_blob(analysis.fingerprint), file_size, file_mtime, track_id),
        )])

    async def mark_failed(self, track_id: int, error: str) -> None:
        await self._write([("UPDATE tracks SET status = 'failed', error = ? WHERE id = ?", (error, track_id))])

    async def remove_track(self, guild_id: int, track_id: int) -> bool:
        [(_, changed)] = await self._write([("DELETE FROM tracks WHERE guild_id = ? AND id = ?",
                                              (guild_id, track_id))])
        return changed > 0

    async def audio_in_use(self, audio_path: str) -> bool:
        """Whether a track of any guild points at `audio_path` (a stored copy is deleted only if none)."""
        return bool(await self._all("SELECT 1 FROM tracks WHERE audio_path = ? LIMIT 1", (audio_path,)))

    async def track_counts(self, guild_id: int) -> dict[str, int]:
        rows = await self._all("SELECT status, COUNT(*) FROM tracks WHERE guild_id = ? GROUP BY status",
                               (guild_id,))
        return {str(status): int(n) for status, n in rows}

    # -- published indexes ------------------------------------------------------------------------------
    async def publish_index(self, guild_id: int, *, backend: str, kind: str, count: int, data: bytes) -> int:
        """Store a new version of the guild's index and drop all but the newest two; returns its version."""
        *_, (rows, _), _ = await self._write([
            *self._ensure_people(guild_id, None),
            ("INSERT INTO index_versions (guild_id, backend, kind, count, data) VALUES (?, ?, ?, ?, ?) "
             "RETURNING version", (guild_id, backend, kind, count, data)),
            ("DELETE FROM index_versions WHERE guild_id = ? AND version NOT IN "
             "(SELECT version FROM index_versions WHERE guild_id = ? ORDER BY version DESC LIMIT 2)",
             (guild_id, guild_id)),
        ])
        return int(rows[0][0])

    async def index_version(self, guild_id: int) -> int | None:
        """The newest published version of the guild's index (a cheap read: no data)."""
        (version,), = await self._all("SELECT MAX(version) FROM index_versions WHERE guild_id = ?", (guild_id,))
        return None if version is None else int(version)

    async def index_data(self, guild_id: int) -> tuple[int, bytes] | None:
        """(version, data) of the newest published index of the guild."""
        rows = await self._all("SELECT version, data FROM index_versions WHERE guild_id = ? "
                               "ORDER BY version DESC LIMIT 1", (guild_id,))
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None

    # -- people's signals -------------------------------------------------------------------------------
    async def add_tag(self, guild_id: int, user_id: int, track_id: int, mood: str) -> None:
        await self._write([
            *self._ensure_people(guild_id, user_id),
            ("INSERT INTO mood_tags (guild_id, user_id, track_id, mood) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
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
        results = await self._write([
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
        return sum(changed for _, changed in results)

    async def remember_pending(self, *, interaction_id: int, guild_id: int, application_id: int, token: str,
                               expires_at: float, process: str) -> None:
        """An interaction `process` acknowledged and has still to answer."""
        await self._write([
            ("INSERT INTO pending_replies (interaction_id, guild_id, application_id, token, expires_at, "
             "process) VALUES (?, ?, ?, ?, ?, ?)",
             (interaction_id, guild_id, application_id, token, expires_at, process)),
        ])

    async def forget_pending(self, interaction_id: int) -> None:
        await self._write([("DELETE FROM pending_replies WHERE interaction_id = ?", (interaction_id,))])

    async def take_orphaned_pending(self, process: str, now: float, *,
                                    owns: Callable[[int], bool]) -> list[tuple[int, int, str]]:
        """(interaction id, application id, token) of the live interactions other processes acknowledged in
        guilds `owns` says are ours now, removed as they are taken; rows whose token has died go too."""
        await self._write([("DELETE FROM pending_replies WHERE expires_at <= ?", (now,))])
        rows = await self._all("SELECT interaction_id, guild_id, application_id, token FROM pending_replies "
                               "WHERE process <> ?", (process,))
        ours = [(int(i), int(a), str(t)) for i, g, a, t in rows if owns(int(g))]
        if not ours:
            return []
        deleted = await self._write([("DELETE FROM pending_replies WHERE interaction_id = ?", (i,))
                                     for i, _, _ in ours])
        return [row for row, (_, changed) in zip(ours, deleted) if changed]  # another taker got the rest

    async def integrity_ok(self) -> bool:
        return await self.engine.integrity_ok()
