"""core.store against a real SQLite file: migrations, WAL, foreign keys, and the repository functions."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from core.store import Analysis, Store, migration_files


async def _track(store: Store, guild: int = 1, name: str = "a") -> int:
    return await store.add_track(guild_id=guild, source=f"/music/{name}.ogg", audio_path=f"/music/{name}.ogg",
                                 content_hash=f"hash-{name}", file_size=10, file_mtime=1.0, title=name.upper(),
                                 artist=None, added_by=None)


async def test_migrations_apply_once_and_record_the_version(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite3"
    store = await Store.open(db)
    latest = migration_files()[-1][0]
    assert await store.schema_version() == latest
    assert await store.migrate() == []  # nothing new the second time
    await store.close()
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"guilds", "users", "tracks", "mood_tags", "feedback", "history", "schema_migrations"} <= names


async def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_ok.sql").write_text("CREATE TABLE a (x INTEGER);")
    (migrations / "0002_broken.sql").write_text("CREATE TABLE b (x INTEGER); THIS IS NOT SQL;")
    with pytest.raises(sqlite3.OperationalError):
        await Store.open(tmp_path / "c.sqlite3", migrations_dir=migrations)
    with sqlite3.connect(tmp_path / "c.sqlite3") as raw:
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = raw.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
    assert "a" in names and "b" not in names and version == 1


async def test_tracks_roundtrip_with_analysis(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.sqlite3")
    track_id = await _track(store)
    vector = np.linspace(-1, 1, 16).astype(np.float32)
    await store.save_analysis(track_id, Analysis(
        duration=30.0, analysis_version="v1", genre="rock", genre_confidence=0.7,
        genre_probs={"rock": 0.7, "metal": 0.3}, mood="tense", mood_confidence=0.5,
        mood_scores={"tense": 0.6}, gems={"tension": 0.4}, embedding=vector, embedding_kind="k1",
    ), file_size=11, file_mtime=2.0)
    row = await store.track(1, track_id)
    assert row is not None and row.status == "ready" and row.genre_probs == {"rock": 0.7, "metal": 0.3}
    assert np.array_equal(row.embedding, vector) and row.file_size == 11
    assert await store.track(2, track_id) is None  # another guild cannot see it
    assert await store.search_titles(1, "a", limit=5) == [(track_id, "A")]
    assert await store.search_titles(1, "%", limit=5) == []  # LIKE wildcards are literal
    await store.close()


async def test_duplicates_by_source_or_hash(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.sqlite3")
    track_id = await _track(store)
    assert (await store.find_duplicate(1, source="/music/a.ogg", content_hash="x")).id == track_id
    assert (await store.find_duplicate(1, source="/else", content_hash="hash-a")).id == track_id
    assert await store.find_duplicate(2, source="/music/a.ogg", content_hash="hash-a") is None
    with pytest.raises(sqlite3.IntegrityError):
        await _track(store)
    await store.close()


async def test_tags_feedback_history_and_forget(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.sqlite3")
    t1, t2 = await _track(store, name="a"), await _track(store, name="b")
    await store.add_tag(1, 42, t1, "calm")
    await store.add_tag(1, 42, t1, "calm")  # idempotent
    await store.add_tag(1, 7, t2, "sad")
    await store.set_feedback(1, 42, t2, -1)
    await store.set_feedback(1, 42, t2, 1)  # the latest opinion wins
    await store.log_history(1, 42, "recommended", [(t1, "calm"), (t2, "calm")])
    assert sorted(await store.tags(1)) == [(7, t2, "sad"), (42, t1, "calm")]
    assert await store.feedback(1, 42) == {t2: 1}
    kinds = [h[1] for h in await store.history(1, 42, limit=10)]
    assert kinds[:2] == ["recommended", "recommended"] and "tag" in kinds and "feedback" in kinds
    assert await store.forget_user(1, 42) > 0
    assert await store.tags(1) == [(7, t2, "sad")]
    assert await store.feedback(1, 42) == {} and await store.history(1, 42, limit=10) == []
    assert await store.integrity_ok()
    await store.close()


async def test_injection_strings_are_stored_as_data(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.sqlite3")
    evil = "x'); DROP TABLE tracks; --"
    track_id = await store.add_track(guild_id=1, source=evil, audio_path=evil, content_hash=evil, file_size=1,
                                     file_mtime=1.0, title=evil, artist=evil, added_by=1)
    await store.add_tag(1, 1, track_id, evil)
    assert (await store.track(1, track_id)).title == evil
    assert await store.search_titles(1, "DROP TABLE", limit=5) == []  # pending tracks are not searchable
    assert (await store.tags(1))[0][2] == evil
    await store.close()


async def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.sqlite3")
    with pytest.raises(sqlite3.IntegrityError):
        await store.add_tag(1, 1, 999, "calm")  # no such track
    track_id = await _track(store)
    await store.add_tag(1, 1, track_id, "calm")
    assert await store.remove_track(1, track_id)
    assert await store.tags(1) == []  # cascaded
    await store.close()
