"""A server's library: registering tracks from files, folders, uploads and links, analysing what changed,
and keeping the nearest-neighbour index in step with the database.

The database is the source of truth (each track's embedding is stored with it); the index is derived from
it and replaced atomically, so a reindex killed halfway leaves the previous index serving and the tracks it
had finished committed — a rerun skips them and resumes.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.analysis import ClipAnalysis
from core.audio import AUDIO_EXTENSIONS, check_extension
from core.config import Settings
from core.errors import Busy, FileMissing, StoreUnavailable, UserError
from core.native_stderr import quiet
from core.shelf import FolderShelf, IndexShelf
from core.store import Analysis, Store, TrackRow

log = logging.getLogger(__name__)

BUSY_RETRY_MIN_S = 0.2
BUSY_RETRY_MAX_S = 5.0
"""How soon a reindex asks again for room in a full work queue: the queue's own estimate, within these."""

Progress = Callable[[int, int], Awaitable[None] | None]
Analyser = Callable[[Path], Awaitable[ClipAnalysis]]
Screen = Callable[[TrackRow, ClipAnalysis], Awaitable[TrackRow | None]]
"""Given a track just analysed and its analysis, the library track it is the same recording as, or None."""


async def report_progress(progress: Progress | None, done: int, total: int) -> None:
    """Tell `progress` (a plain or an async callback, or None) that `done` of `total` are done."""
    if progress is not None:
        outcome = progress(done, total)
        if asyncio.iscoroutine(outcome):
            await outcome


@dataclass(frozen=True)
class AddedTrack:
    track_id: int
    title: str
    source: str


@dataclass(frozen=True)
class AlreadyThere:
    """A source that turned out to be the same recording as a library track (another file or link of it)."""

    source: str
    track_id: int
    title: str

    @property
    def message(self) -> str:
        return f"{self.title} is already in the library"


@dataclass
class AddReport:
    added: list[AddedTrack] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    """Sources already in the library as they are: the same link or path, or the same file's bytes."""
    already_there: list[AlreadyThere] = field(default_factory=list)
    """Sources that are the same recording as a library track (an upload of a song added by link, a
    re-encoded copy): analysed, recognised by their fingerprint, and not added."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    left_out: int = 0
    """Playlist entries not tried because of the per-call limit (`Settings.max_playlist_entries`)."""
    left_out_is_minimum: bool = False
    """True when a playlist had more entries than could be listed: `left_out` is then a lower bound."""

    def to_dict(self) -> dict:
        return {
            "added": [vars(a) for a in self.added],
            "duplicates": self.duplicates,
            "already_there": [vars(a) for a in self.already_there],
            "failed": [{"source": s, "reason": r} for s, r in self.failed],
            "left_out": self.left_out,
            "left_out_is_minimum": self.left_out_is_minimum,
        }


@dataclass
class ReindexReport:
    analysed: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    failed_ids: list[int] = field(default_factory=list)
    already_there: list[AlreadyThere] = field(default_factory=list)
    """Tracks the screen found to be the same recording as a library track: left pending, not indexed."""
    already_there_ids: list[int] = field(default_factory=list)
    seconds: float = 0.0
    index_size: int = 0

    @property
    def tracks_per_second(self) -> float:
        return self.analysed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"analysed": self.analysed, "skipped": self.skipped,
                "failed": [{"source": s, "reason": r} for s, r in self.failed],
                "seconds": round(self.seconds, 3), "tracks_per_second": round(self.tracks_per_second, 2),
                "index_size": self.index_size}


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def audio_files(folder: Path) -> list[Path]:
    """Every file below `folder` with an audio extension, in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


@quiet
def title_from_tags(path: Path) -> tuple[str, str | None]:
    """(title, artist) from the file's own tags when libsndfile can read them, else the file name."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            meta = f.copy_metadata()
    except Exception:  # noqa: BLE001 - tags are a nicety; any reader failure means "no tags"
        meta = {}
    title = (meta.get("title") or "").strip() or path.stem.replace("_", " ")
    artist = (meta.get("artist") or "").strip() or None
    return title, artist


def needs_analysis(row: TrackRow, version: str, *, full: bool) -> bool:
    if full or row.status == "pending" or row.analysis_version != version:
        return True
    try:
        stat = os.stat(row.audio_path)
    except OSError:
        return True
    changed = stat.st_size != row.file_size or abs(stat.st_mtime - (row.file_mtime or 0.0)) > 1e-3
    return changed


def stored_audio_dir(settings: Settings, guild_id: int) -> Path:
    """Where a guild's own copies of uploads and downloads live. Per guild: a copy shared by content hash
    across guilds was deleted by one guild's failed add while another guild's track still used it.
    (Copies stored before this, directly in `audio/`, stay where their rows point.)"""
    return settings.data_dir / "audio" / f"guild-{guild_id}"


def to_analysis(result: ClipAnalysis, version: str) -> Analysis:
    assert result.embedding is not None and result.embedding_kind is not None
    return Analysis(
        duration=result.clip_seconds, analysis_version=version, genre=result.genre,
        genre_confidence=result.genre_confidence, genre_probs=result.genre_probs, mood=result.mood,
        mood_confidence=result.mood_confidence, mood_scores=result.mood_scores, gems=result.gems,
        embedding=result.embedding, embedding_kind=result.embedding_kind,
        segment_embeddings=result.segment_embeddings, segment_tags=result.segment_tags,
        segment_starts=result.segment_starts, fingerprint=result.fingerprint,
    )


class Library:
    """Library operations for one data folder; analysis is injected so it runs on the service's scheduler,
    and the index is published on a shelf (`core.shelf`) where every process serving the guild finds it."""

    def __init__(self, settings: Settings, store: Store, analyser: Analyser,
                 version: str | asyncio.Future[str], shelf: IndexShelf | None = None) -> None:
        self.settings = settings
        self.store = store
        self.analyser = analyser
        self._version = version
        """The analysis version, or a future of it: the service may still be starting its workers, which name
        it, while an add registers its files."""
        self.shelf = shelf or FolderShelf(settings)
        self._locks: dict[int, asyncio.Lock] = {}

    async def version(self) -> str:
        """The analysis version stored with each track's analysis (waits for the workers to name it)."""
        if not isinstance(self._version, str):
            self._version = await self._version
        return self._version

    def lock(self, guild_id: int) -> asyncio.Lock:
        """One reindex or add at a time per guild."""
        return self._locks.setdefault(guild_id, asyncio.Lock())

    async def register_file(self, guild_id: int, path: Path, *, source: str, title: str | None = None,
                            artist: str | None = None, added_by: int | None, copy: bool,
                            report: AddReport, intake: Intake | None = None) -> int | None:
        """Insert one file as a pending track unless it is a duplicate, and hand it to `intake` (the add's
        analysis) at once. `copy` keeps our own copy (uploads and downloads live in temporary places); local
        library files are referenced where they are."""
        check_extension(path.name)
        digest = await asyncio.to_thread(file_hash, path)
        duplicate = await self.store.find_duplicate(guild_id, source=source, content_hash=digest)
        if duplicate is not None:
            report.duplicates.append(source)
            return None
        if copy:
            target_dir = stored_audio_dir(self.settings, guild_id)
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / f"{digest}{path.suffix.lower()}"
            if not target.exists():
                tmp = target.with_suffix(target.suffix + ".part")
                await asyncio.to_thread(shutil.copyfile, path, tmp)
                os.replace(tmp, target)
            audio_path = target
        else:
            audio_path = path.resolve()
        if title is None:
            title, tag_artist = await asyncio.to_thread(title_from_tags, path)
            artist = artist or tag_artist
        stat = audio_path.stat()
        track_id = await self.store.add_track(
            guild_id=guild_id, source=source, audio_path=str(audio_path), content_hash=digest,
            file_size=stat.st_size, file_mtime=stat.st_mtime, title=title[:200], artist=artist,
            added_by=added_by)
        report.added.append(AddedTrack(track_id, title[:200], source))
        if intake is not None:
            await intake.take(track_id)
        return track_id

    async def register_path(self, guild_id: int, path: Path, *, added_by: int | None,
                            report: AddReport, intake: Intake | None = None) -> None:
        if path.is_dir():
            files = audio_files(path)
            if not files:
                report.failed.append((str(path), "no audio files in this folder"))
            for file in files:
                await self._register_one(guild_id, file, added_by=added_by, report=report, intake=intake)
        elif path.is_file():
            await self._register_one(guild_id, path, added_by=added_by, report=report, intake=intake)
        else:
            raise FileMissing(f"no such file or folder: {path}")

    async def _register_one(self, guild_id: int, path: Path, *, added_by: int | None,
                            report: AddReport, intake: Intake | None) -> None:
        try:
            await self.register_file(guild_id, path, source=str(path.resolve()), added_by=added_by,
                                     copy=False, report=report, intake=intake)
        except UserError as exc:
            report.failed.append((str(path), str(exc)))

    async def reindex(self, guild_id: int, *, full: bool = False,
                      progress: Progress | None = None) -> ReindexReport:
        """Analyse the tracks that need it (all with `full`), committing each as it finishes, then rebuild
        the index from the database and swap it in. (An add screens its tracks for recordings the library
        already has: `Intake`.)"""
        started = time.perf_counter()
        report = ReindexReport()
        rows = await self.store.tracks(guild_id)
        version = await self.version()
        todo = [r for r in rows if needs_analysis(r, version, full=full)]
        report.skipped = len(rows) - len(todo)
        done = 0
        screening = asyncio.Lock()

        async def one(row: TrackRow) -> None:
            nonlocal done
            await self.analyse_track(row, report, screening, None)
            done += 1
            await report_progress(progress, done, len(todo))

        if todo:
            await report_progress(progress, 0, len(todo))
        in_flight = asyncio.Semaphore(max(1, self.settings.workers) * 2)

        async def bounded(row: TrackRow) -> None:
            async with in_flight:
                await one(row)

        await asyncio.gather(*(bounded(r) for r in todo))
        report.index_size = await self.rebuild_index(guild_id)
        report.seconds = time.perf_counter() - started
        return report

    async def analyse_track(self, row: TrackRow, report: ReindexReport, screening: asyncio.Lock,
                            screen: Screen | None) -> None:
        """Analyse one track and commit it, unless `screen` (screening and committing take turns under
        `screening`) names it the same recording as a library track; a track that cannot be analysed is
        marked failed. Either outcome goes into `report`."""
        version = await self.version()
        try:
            if not Path(row.audio_path).is_file():
                raise FileMissing(f"the audio file is gone: {Path(row.audio_path).name}")
            result = await self._analyse_when_there_is_room(Path(row.audio_path))
            stat = os.stat(row.audio_path)
            async with screening:
                same = await screen(row, result) if screen is not None else None
                if same is not None:
                    report.already_there.append(AlreadyThere(row.source, same.id, same.title))
                    report.already_there_ids.append(row.id)
                else:
                    await self.store.save_analysis(row.id, to_analysis(result, version),
                                                   file_size=stat.st_size, file_mtime=stat.st_mtime)
                    report.analysed += 1
        except StoreUnavailable:
            raise  # the database is away, not this track at fault: the reindex stops and says so
        except UserError as exc:
            await self.store.mark_failed(row.id, str(exc))
            report.failed.append((row.source, str(exc)))
            report.failed_ids.append(row.id)

    async def _analyse_when_there_is_room(self, path: Path) -> ClipAnalysis:
        """The analysis of a library track, waiting while the work queue is full. A reindex is not a member
        who can be told "busy, try again": refusing it would mark good tracks failed (and an add would drop
        them), so it waits for room, as long as it takes, at the pace the queue's estimate suggests."""
        while True:
            try:
                return await self.analyser(path)
            except Busy as busy:
                await asyncio.sleep(min(max(busy.retry_after, BUSY_RETRY_MIN_S), BUSY_RETRY_MAX_S))

    async def discard(self, guild_id: int, track_ids: Iterable[int]) -> None:
        """Forget tracks whose first analysis failed: a failed add leaves no row and no stored copy. A
        copy is deleted only when no track of any guild points at it any more."""
        stored = stored_audio_dir(self.settings, guild_id)
        for track_id in track_ids:
            row = await self.store.track(guild_id, track_id)
            if row is None:
                continue
            await self.store.remove_track(guild_id, track_id)
            if Path(row.audio_path).parent == stored and not await self.store.audio_in_use(row.audio_path):
                Path(row.audio_path).unlink(missing_ok=True)

    async def ready_segments(self, guild_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels, unit vectors) of every analysed segment of every ready track (core.segment_match). A
        track analysed before segments were kept stands in with its one track vector until its reindex."""
        from core.segment_match import labels_of, unit_rows

        labels, vectors = [], []
        for row in await self.store.tracks(guild_id, status="ready"):
            if row.indexed_vectors is None:
                continue
            rows = unit_rows(row.indexed_vectors)
            labels.append(labels_of(row.id, len(rows)))
            vectors.append(rows)
        if not labels:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(labels), np.concatenate(vectors)

    async def rebuild_index(self, guild_id: int) -> int:
        """Build a fresh segment-level index from every analysed track and publish it as the guild's newest
        version; returns how many tracks it holds."""
        from core.frontend import EMBEDDING_DIM
        from core.index import IndexParams, VectorIndex, create_index
        from core.segment_match import SEGMENT_KIND, track_of

        labels, vectors = await self.ready_segments(guild_id)
        params = IndexParams.from_settings(self.settings)

        def build() -> VectorIndex:
            # An empty library still gets an (empty) index, so removed tracks stop being served.
            dim = vectors.shape[1] if labels.size else EMBEDDING_DIM
            index = create_index(self.settings.index_backend, dim, params, kind=SEGMENT_KIND)
            if labels.size:
                index.add(labels, vectors)
            return index

        await self.shelf.publish(guild_id, await asyncio.to_thread(build))
        return int(np.unique(track_of(labels)).size)


class Intake:
    """An add's analysis, which takes each track as soon as it is registered: the first tracks are analysed
    while the rest are still being hashed, read for tags and inserted (0.38 s for 68 files, with both cores
    idle, when registration came first), and while the workers are still starting.

    As `Library.reindex` does: at most two tracks a worker in flight, screening and committing take turns,
    and the index is rebuilt once at the end. `progress(done, total)` counts the tracks taken so far, so its
    total grows while registration goes on. Use as `async with Intake(...) as intake:`, registering with
    `intake=intake`, then `await intake.finish()`; leaving the block early (an error, a cancellation)
    cancels the analyses still running."""

    def __init__(self, library: Library, guild_id: int, *, progress: Progress | None = None,
                 screen: Screen | None = None) -> None:
        self.library = library
        self.guild_id = guild_id
        self.progress = progress
        self.screen = screen
        self.report = ReindexReport()
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight = asyncio.Semaphore(max(1, library.settings.workers) * 2)
        self._screening = asyncio.Lock()
        self._done = 0
        self._started = time.perf_counter()

    async def __aenter__(self) -> Intake:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def take(self, track_id: int) -> None:
        """Start analysing a track just registered."""
        self._tasks.append(asyncio.create_task(self._one(track_id), name=f"add-{self.guild_id}-{track_id}"))
        await report_progress(self.progress, self._done, len(self._tasks))

    async def _one(self, track_id: int) -> None:
        async with self._in_flight:
            row = await self.library.store.track(self.guild_id, track_id)
            if row is not None:
                await self.library.analyse_track(row, self.report, self._screening, self.screen)
        self._done += 1
        await report_progress(self.progress, self._done, len(self._tasks))

    async def finish(self) -> ReindexReport:
        """Wait for every track taken (the first error, such as the store going away, is raised), then
        rebuild the index if any was taken."""
        await asyncio.gather(*self._tasks)
        if self._tasks:
            self.report.index_size = await self.library.rebuild_index(self.guild_id)
        self.report.seconds = time.perf_counter() - self._started
        return self.report
