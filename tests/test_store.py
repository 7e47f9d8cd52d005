"""core.store against both real engines, a SQLite file and a PostgreSQL server: migrations, foreign keys,
transactions and the repository functions. Every test that takes `open_store` runs once per engine."""
from __future__ import annotations

import asyncio
import fcntl
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from core.config import Settings
from core.store import MIGRATIONS_DIR, Analysis, ConstraintViolation, Store, migration_files
from tests.conftest import REPO_ROOT
from tests.servers import PG_PASSWORD

Opener = Callable[..., Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the test's store lives: a SQLite file, or the URL of a fresh PostgreSQL database."""
    if engine == "sqlite":
        return str(tmp_path / "c.sqlite3")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def open_store(engine: str, database: str) -> Opener:
    async def opener(**kwargs: object) -> Store:
        if engine == "sqlite":
            return await Store.open(Path(database), **kwargs)  # type: ignore[arg-type]
        return await Store.open_url(database, **kwargs)  # type: ignore[arg-type]
    return opener


async def _track(store: Store, guild: int = 1, name: str = "a") -> int:
    return await store.add_track(guild_id=guild, source=f"/music/{name}.ogg", audio_path=f"/music/{name}.ogg",
                                 content_hash=f"hash-{name}", file_size=10, file_mtime=1.0, title=name.upper(),
                                 artist=None, added_by=None)


TABLES = {"guilds", "users", "tracks", "mood_tags", "feedback", "history", "index_versions",
          "schema_migrations"}


async def _tables(store: Store) -> set[str]:
    if store.engine_name == "sqlite":
        rows = await store._all("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = await store._all("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                "current_schema()")
    return {str(r[0]) for r in rows}


def test_one_migration_history_for_both_engines() -> None:
    sqlite = [(v, p.name) for v, p in migration_files()]
    postgres = [(v, p.name) for v, p in migration_files(MIGRATIONS_DIR / "postgresql")]
    assert sqlite == postgres and [v for v, _ in sqlite] == list(range(1, len(sqlite) + 1))


async def test_migrations_apply_once_and_record_the_version(open_store: Opener) -> None:
    store = await open_store()
    latest = migration_files()[-1][0]
    assert await store.schema_version() == latest
    assert [name for _, name in sorted((int(n[:4]), n) for n in store.applied)][-1].startswith(f"{latest:04d}")
    assert await store.migrate() == []  # nothing new the second time
    assert TABLES <= await _tables(store)
    if store.engine_name == "sqlite":
        assert (await store._all("PRAGMA journal_mode"))[0][0] == "wal"
    await store.close()
    again = await open_store()  # a second opening applies nothing
    assert again.applied == []
    await again.close()


async def test_a_failing_migration_leaves_nothing_behind(engine: str, open_store: Opener,
                                                         tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    folder = migrations / ("postgresql" if engine == "postgresql" else "")
    folder.mkdir(parents=True)
    (folder / "0001_ok.sql").write_text("CREATE TABLE a (x INTEGER);")
    (folder / "0002_broken.sql").write_text("CREATE TABLE b (x INTEGER); THIS IS NOT SQL;")
    with pytest.raises(Exception, match="syntax error"):
        await open_store(migrations_dir=migrations)
    (folder / "0002_broken.sql").unlink()
    store = await open_store(migrations_dir=migrations)
    try:
        names = await _tables(store)
        assert "a" in names and "b" not in names and await store.schema_version() == 1
    finally:
        await store.close()


async def test_a_sqlite_migration_is_cut_only_where_a_statement_ends(tmp_path: Path) -> None:
    """Migrations run statement by statement inside one transaction; a `;` in a string, a comment or a
    trigger body does not end a statement."""
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_tricky.sql").write_text(
        "CREATE TABLE a (x TEXT DEFAULT 'semi;colon'); -- a comment; with a semicolon\n"
        "CREATE TABLE log (n INTEGER);\n"
        "CREATE TRIGGER counted AFTER INSERT ON a BEGIN\n"
        "    INSERT INTO log VALUES (1); INSERT INTO log VALUES (2);\nEND;\n"
        "INSERT INTO a DEFAULT VALUES")  # the last statement without its semicolon
    store = await Store.open(tmp_path / "c.sqlite3", migrations_dir=migrations)
    try:
        assert store.applied == ["0001_tricky.sql"]
        assert await store._all("SELECT x FROM a") == [("semi;colon",)]
        assert await store._all("SELECT n FROM log ORDER BY n") == [(1,), (2,)]
    finally:
        await store.close()


RACERS, ROUNDS = 8, 4
_RACER = """\
import asyncio, fcntl, sys
from pathlib import Path
from core.store import Store

database, gate = sys.argv[1], sys.argv[2]

async def start() -> int:
    store = await (Store.open_url(database) if database.startswith("postgresql")
                   else Store.open(Path(database)))
    await store.close()
    return len(store.applied)

with open(gate) as held:
    print("ready", flush=True)
    fcntl.flock(held, fcntl.LOCK_SH)  # blocks until the test lets every racer go in the same instant
print(asyncio.run(start()), flush=True)
"""


def _race_to_migrate(database: str, gate: Path) -> list[tuple[int, str, str]]:
    """RACERS processes, imported and waiting on one flock the test holds, released by a single unlock;
    each opens `database` (which migrates it). Their exit codes, outputs and errors."""
    with open(gate, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        procs = [subprocess.Popen([sys.executable, "-c", _RACER, database, str(gate)], cwd=REPO_ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(RACERS)]
        for proc in procs:  # every racer has its imports done and is queued on the gate
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n", proc.communicate()
        fcntl.flock(held, fcntl.LOCK_UN)
    outputs = [proc.communicate(timeout=300) for proc in procs]  # only against a hang
    return [(proc.returncode, out, err) for proc, (out, err) in zip(procs, outputs)]


async def test_processes_starting_together_migrate_once(engine: str, request: pytest.FixtureRequest,
                                                        tmp_path: Path) -> None:
    """Two bots and a worker may start at the same moment against one database: exactly one of them
    applies the migrations, the others wait for it and find nothing left to do. RACERS processes are
    released together by one unlock, on a fresh database, ROUNDS times."""
    for round_ in range(ROUNDS):
        database = (str(tmp_path / f"race{round_}.sqlite3") if engine == "sqlite"
                    else request.getfixturevalue("postgres").new_database())
        results = _race_to_migrate(database, tmp_path / "gate")
        assert all(code == 0 for code, _, _ in results), "\n".join(err for code, _, err in results if code)
        assert sorted(int(out) for _, out, _ in results) == [0] * (RACERS - 1) + [len(migration_files())]


def _flock_waiters(path: Path) -> int:
    """Processes or threads blocked waiting for an flock on `path` (Linux's /proc/locks "->" lines)."""
    inode = path.stat().st_ino
    return sum(1 for line in Path("/proc/locks").read_text().splitlines()
               if "->" in line and line.split()[6].endswith(f":{inode}"))


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="reads the kernel's lock table (Linux)")
async def test_a_process_starting_during_a_long_migration_waits_for_it(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that starts while another applies migrations waits however long they take. It used to wait
    on SQLite's write lock for the busy timeout only, then fail "database is locked" (a race of 8 under two
    CPU hogs, 1 round in 120). Here the migration outlasts a busy timeout made short, and never ends until
    the starting process is seen queued behind it."""
    from core.engines import sqlite as engine

    monkeypatch.setattr(engine, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "db.sqlite3"
    migrating = sqlite3.connect(path, isolation_level=None)
    migrating.execute("PRAGMA journal_mode=WAL")
    lock = tmp_path / "locks" / f"{engine.MIGRATION_LOCK}.lock"
    lock.parent.mkdir()
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process's migration: its lock, then its transaction
        migrating.execute("BEGIN IMMEDIATE")
        starting = asyncio.create_task(Store.open(path))
        while not (starting.done() or _flock_waiters(lock)):
            await asyncio.sleep(0.01)
        assert not starting.done(), starting.exception()  # before: "database is locked" after 50 ms
        migrating.execute("ROLLBACK")  # the other process ends (here having applied nothing)
    migrating.close()
    store = await starting
    try:
        assert len(store.applied) == len(migration_files())
    finally:
        await store.close()


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="reads the kernel's lock table (Linux)")
async def test_a_process_opening_a_new_database_waits_to_switch_it_to_wal(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Switching a fresh file to WAL needs it to itself. A process that opened it while another held it used
    to fail "database is locked" once the busy timeout ran out (or at once, when both had read it: the race
    of 8 processes failed so in a fresh-clone CI run); it now queues on the migrations' flock. Here the
    other process holds the file and that lock until the opening one is seen queued behind it."""
    from core.engines import sqlite as engine

    monkeypatch.setattr(engine, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "db.sqlite3"
    other = sqlite3.connect(path, isolation_level=None)  # a new file, still in rollback-journal mode
    lock = tmp_path / "locks" / f"{engine.MIGRATION_LOCK}.lock"
    lock.parent.mkdir()
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        other.execute("BEGIN EXCLUSIVE")
        starting = asyncio.create_task(Store.open(path))
        while not (starting.done() or _flock_waiters(lock)):
            await asyncio.sleep(0.01)
        assert not starting.done(), starting.exception()  # before: "database is locked" after 50 ms
        other.execute("ROLLBACK")
    other.close()
    store = await starting
    try:
        assert len(store.applied) == len(migration_files())
        (mode,), = await store.engine.fetch("PRAGMA journal_mode")
        assert mode == "wal"
    finally:
        await store.close()


async def test_tracks_roundtrip_with_analysis(open_store: Opener) -> None:
    store = await open_store()
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
    assert await store.search_titles(1, "A", limit=5) == [(track_id, "A")]  # either case, on both engines
    await store.close()


async def test_tracks_by_id_reads_only_the_asked_ready_tracks_of_the_guild(open_store: Opener) -> None:
    """What /similar reads: its candidates' rows, in id order; ids of another guild, of tracks not ready and
    of tracks that are gone are left out; more ids than one `IN` list holds are read in batches."""
    from core.store import IDS_PER_QUERY

    store = await open_store()
    ids = [await _track(store, name=f"t{i}") for i in range(IDS_PER_QUERY + 5)]
    other = await _track(store, guild=2, name="theirs")
    tags = np.full((3, 50), 0.25, np.float32)
    for i, track_id in enumerate(ids):
        if i % 3:  # every third track stays pending
            await store.save_analysis(track_id, Analysis(
                duration=9.0, analysis_version="v1", genre=None, genre_confidence=None, genre_probs=None,
                mood=None, mood_confidence=None, mood_scores=None, gems=None,
                embedding=np.full(4, i, np.float32), embedding_kind="k1",
                segment_tags=tags * (i % 2)), file_size=10, file_mtime=1.0)
    await store.save_analysis(other, Analysis(
        duration=9.0, analysis_version="v1", genre=None, genre_confidence=None, genre_probs=None, mood=None,
        mood_confidence=None, mood_scores=None, gems=None, embedding=np.ones(4, np.float32),
        embedding_kind="k1"), file_size=10, file_mtime=1.0)
    ready = [t for i, t in enumerate(ids) if i % 3]
    asked = [ids[-1], ids[1], other, ids[0], 10**12, ids[1], *ids[2:IDS_PER_QUERY + 2]]
    got = await store.tracks_by_id(1, asked, status="ready")
    assert [r.id for r in got] == sorted(t for t in set(asked) if t in ready)
    assert len(got) > IDS_PER_QUERY // 2 and all(r.status == "ready" and r.guild_id == 1 for r in got)
    assert np.array_equal(got[0].embedding, np.full(4, 1, np.float32))
    assert [r.id for r in await store.tracks_by_id(1, [ids[0], ids[1]])] == ids[:2]  # any status
    assert await store.tracks_by_id(1, []) == []
    tables = await store.ready_segment_tags(1)
    assert len(tables) == len(ready) and all(t is not None and t.shape == (3, 50) for t in tables)
    assert [float(t[0, 0]) for t in tables[:2]] == [0.25, 0.0]  # ids[1] (odd), ids[2] (even), in id order
    assert await store.ready_segment_tags(2) == [None]  # analysed before tags were kept
    await store.close()


async def test_fingerprints_arrive_with_migration_5_and_round_trip(engine: str, open_store: Opener,
                                                                   tmp_path: Path) -> None:
    """A library made before fingerprints (schema 4) keeps its tracks through migration 5; they read back
    without a fingerprint (the embedding rule decides until their next reindex) and an analysis then
    stores one, on both engines."""
    import shutil

    old = tmp_path / "migrations"
    (old / "postgresql").mkdir(parents=True)
    for version, path in migration_files():
        if version <= 4:
            shutil.copy(path, old / path.name)
            shutil.copy(MIGRATIONS_DIR / "postgresql" / path.name, old / "postgresql" / path.name)
    store = await open_store(migrations_dir=old)
    assert await store.schema_version() == 4
    track_id = await _track(store)
    vector = np.linspace(-1, 1, 16).astype(np.float32)
    await store._write([("UPDATE tracks SET status = 'ready', embedding = ?, embedding_kind = 'k1' "
                          "WHERE id = ?", (vector.astype("<f4").tobytes(), track_id))])
    await store.close()
    store = await open_store()
    try:
        assert [n[:4] for n in store.applied] == ["0005"] and await store.schema_version() == 5
        before = await store.track(1, track_id)
        assert before is not None and before.fingerprint is None and np.array_equal(before.embedding, vector)
        landmarks = np.array([[2**22 - 1, 0], [12345, 2**31 + 7]], np.uint32)
        # an empty one is "none found", not "none yet"
        for stored in (landmarks, np.zeros((0, 2), np.uint32)):
            await store.save_analysis(track_id, Analysis(
                duration=30.0, analysis_version="v2", genre=None, genre_confidence=None, genre_probs=None,
                mood=None, mood_confidence=None, mood_scores=None, gems=None, embedding=vector,
                embedding_kind="k1", fingerprint=stored), file_size=11, file_mtime=2.0)
            after = await store.track(1, track_id)
            assert after is not None and after.fingerprint is not None
            assert after.fingerprint.dtype == np.uint32 and np.array_equal(after.fingerprint, stored)
    finally:
        await store.close()


async def test_duplicates_by_source_or_hash(open_store: Opener) -> None:
    store = await open_store()
    track_id = await _track(store)
    assert (await store.find_duplicate(1, source="/music/a.ogg", content_hash="x")).id == track_id
    assert (await store.find_duplicate(1, source="/else", content_hash="hash-a")).id == track_id
    assert await store.find_duplicate(2, source="/music/a.ogg", content_hash="hash-a") is None
    with pytest.raises(ConstraintViolation):
        await _track(store)
    await store.close()


async def test_tags_feedback_history_and_forget(open_store: Opener) -> None:
    store = await open_store()
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


async def test_injection_strings_are_stored_as_data(open_store: Opener) -> None:
    store = await open_store()
    evil = "x'); DROP TABLE tracks; --"
    track_id = await store.add_track(guild_id=1, source=evil, audio_path=evil, content_hash=evil, file_size=1,
                                     file_mtime=1.0, title=evil, artist=evil, added_by=1)
    await store.add_tag(1, 1, track_id, evil)
    assert (await store.track(1, track_id)).title == evil
    assert await store.search_titles(1, "DROP TABLE", limit=5) == []  # pending tracks are not searchable
    assert (await store.tags(1))[0][2] == evil
    await store.close()


async def test_foreign_keys_are_enforced(open_store: Opener) -> None:
    store = await open_store()
    with pytest.raises(ConstraintViolation):
        await store.add_tag(1, 1, 999, "calm")  # no such track
    track_id = await _track(store)
    await store.add_tag(1, 1, track_id, "calm")
    assert await store.remove_track(1, track_id)
    assert await store.tags(1) == []  # cascaded
    await store.close()


async def test_snowflakes_mtimes_and_nul_survive_the_roundtrip(open_store: Opener) -> None:
    store = await open_store()
    try:
        guild, user = 2**63 - 1, 1234567890123456789  # the largest id either engine holds; a snowflake
        track_id = await store.add_track(guild_id=guild, source="s", audio_path="/a", content_hash="h",
                                         file_size=2**40, file_mtime=1_700_000_000.123456, title="nul\x00here",
                                         artist=None, added_by=user)
        row = await store.track(guild, track_id)
        assert row is not None and row.file_mtime == 1_700_000_000.123456  # a double, not a 4-byte real
        assert row.file_size == 2**40 and row.title == "nul\ufffdhere"  # NUL is stored as U+FFFD on both
        await store.add_tag(guild, user, track_id, "calm")
        assert await store.tags(guild) == [(user, track_id, "calm")]
        (at, kind, *_), = await store.history(guild, user, limit=5)
        assert kind == "tag" and len(at) == 24 and at.endswith("Z") and at[10] == "T"
    finally:
        await store.close()


async def test_a_failed_transaction_leaves_nothing(open_store: Opener) -> None:
    store = await open_store()
    try:
        track_id = await _track(store)
        with pytest.raises(ConstraintViolation):  # the tag is fine, the history kind breaks a CHECK
            await store._write([
                ("INSERT INTO users (id) VALUES (?) ON CONFLICT DO NOTHING", (5,)),
                ("INSERT INTO mood_tags (guild_id, user_id, track_id, mood) VALUES (?, ?, ?, ?)",
                 (1, 5, track_id, "calm")),
                ("INSERT INTO history (guild_id, user_id, kind, track_id, detail) VALUES (?, ?, ?, ?, ?)",
                 (1, 5, "not-a-kind", track_id, "")),
            ])
        assert await store.tags(1) == []
        assert await store._all("SELECT id FROM users WHERE id = ?", (5,)) == []
    finally:
        await store.close()


async def test_published_indexes_keep_the_newest_two(open_store: Opener) -> None:
    store = await open_store()
    try:
        assert await store.index_version(7) is None and await store.index_data(7) is None
        versions = [await store.publish_index(7, backend="hnsw", kind="k", count=i, data=bytes([i]) * 10)
                    for i in range(4)]
        assert versions == sorted(versions) and len(set(versions)) == 4
        assert await store.index_version(7) == versions[-1]
        assert await store.index_data(7) == (versions[-1], bytes([3]) * 10)
        kept = await store._all("SELECT version FROM index_versions WHERE guild_id = ? ORDER BY version", (7,))
        assert [v for v, in kept] == versions[-2:]
        assert await store.index_version(8) is None  # per guild
    finally:
        await store.close()


LOCK_HOLDER = """
import asyncio, sys
from pathlib import Path
from core.store import Store
async def go():
    url = sys.argv[1]
    store = await (Store.open_url(url) if url.startswith("postgresql") else Store.open(Path(url)))
    async with store.exclusive("reindex-9", wait=False) as held:
        print("held" if held else "busy", flush=True)
        await asyncio.sleep(600)
asyncio.run(go())
"""


async def test_the_cross_process_lock_is_exclusive_and_dies_with_its_holder(open_store: Opener,
                                                                            database: str) -> None:
    store = await open_store()
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, database], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        async with store.exclusive("reindex-9", wait=False) as held:
            assert not held  # another process has it
        async with store.exclusive("reindex-10", wait=False) as held:
            assert held  # another name is free
        holder.kill()  # SIGKILL: no chance to unlock
        holder.wait(timeout=30)
        async with store.exclusive("reindex-9", wait=True) as held:  # freed by its holder's death
            assert held
            async with store.exclusive("reindex-9", wait=False) as again:
                assert not again  # held, even against this same process
    finally:
        holder.kill()
        holder.wait(timeout=30)
        await store.close()


async def test_connect_follows_the_settings_and_never_logs_the_password(
        pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url)
    store = await Store.connect(settings)
    try:
        assert store.engine_name == "postgresql"
        assert await store.integrity_ok()
    finally:
        await store.close()
    assert "127.0.0.1" in caplog.text and PG_PASSWORD not in caplog.text
    assert PG_PASSWORD not in repr(settings)
    local = await Store.connect(Settings(data_dir=tmp_path / "data"))
    assert local.engine_name == "sqlite" and (tmp_path / "data" / "cratedigger.sqlite3").is_file()
    await local.close()
    with pytest.raises(ValueError, match="postgresql://"):
        await Store.connect(Settings(data_dir=tmp_path, database_url="mysql://x@y/z"))


def test_no_sql_outside_the_store() -> None:
    """SQL keywords in string literals appear only in core/store.py, core/engines/ and migrations/."""
    import ast
    import re

    allowed = {REPO_ROOT / "core" / "store.py", *(REPO_ROOT / "core" / "engines").glob("*.py")}
    pattern = re.compile(r"\b(SELECT .* FROM|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE)\b")
    offenders = []
    for folder in ("core", "bot"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            if path in allowed:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and pattern.search(node.value):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert offenders == []

