"""The use cases, shared by the bot and the command line: classify, mood, similar, recommend, tag,
feedback, history, forget, add to library, reindex, stats.

CPU-heavy work (decoding, features, inference) runs wherever the service's scheduler puts it (`core.jobs`:
this process's worker pool, or the job queue's workers), behind a bounded backlog: when it is full, callers
get `Busy` with an estimate of when to retry instead of piling up. Links are fetched in worker processes of
their own (`core.jobs.fetches`), bounded the same way. A member has one request in flight at a time
(`MemberBusy` for a second), so no member can fill either backlog.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from core.analysis import ClipAnalysis, Limits, analyse
from core.audio import check_extension
from core.background import one_blas_thread
from core.config import Settings
from core.errors import EmptyLibrary, LibraryBusy, MemberBusy, PlaylistLink, TooLarge, UnknownTrack, UserError
from core.fetch import is_link
from core.jobs import Scheduler, models_version, open_scheduler
from core.jobs.fetches import FetchPool
from core.library import AddReport, Intake, Library, Progress, ReindexReport, Screen, report_progress
from core.shelf import shelf_for
from core.store import Store, TrackRow

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Upload:
    """A file a user sent: its name (which tells the format) and its bytes."""

    filename: str
    data: bytes


Item = Upload | Path


def _write_atomically(path: Path, data: bytes) -> None:
    """A reader never sees half a cached file, even with two processes drawing the same map."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


@dataclass(frozen=True)
class GenreReport:
    file: str
    genre: str | None
    confidence: float | None
    top: list[tuple[str, float]]
    segments: int
    clip_seconds: float
    model: str | None
    sections: list[dict[str, Any]] = field(default_factory=list)
    title: str | None = None
    """What the site calls the track, for a link (`file` is then the link as sent)."""
    tags: list[str] = field(default_factory=list)
    """MSD tags that fire clearly on the clip (core.tags), clearest first; often none."""
    resolved: dict[str, Any] | None = None
    """For a streaming service's link: what was analysed instead (`core.resolve.Resolved.to_dict`)."""
    map_png: bytes | None = None
    """The library map with the clip marked, when asked for (`classify(..., with_map=True)`); not in JSON."""

    @property
    def verdict(self) -> str:
        """The genre, or "jazz or blues" when the top two are close (core.genre.verdict_label)."""
        from core.genre import verdict_label

        return verdict_label(self.top)

    @property
    def close_call(self) -> bool:
        """The runner-up is named beside the top genre."""
        return bool(self.top) and self.verdict != self.top[0][0]

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        del doc["map_png"]
        doc["top"] = [[g, p] for g, p in self.top]
        doc["verdict"] = self.verdict
        return doc


@dataclass(frozen=True)
class MoodReport:
    file: str
    mood: str | None
    confidence: float | None
    moods: dict[str, float]
    gems: dict[str, float]
    valence: float | None = None
    arousal: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrackHit:
    track_id: int
    title: str
    source: str
    score: float
    reason: str
    same_recording: bool = False
    """This library track is the query's own recording (a copy or an excerpt of it): shown first, as
    "this is <title>, already in the library"."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SimilarReport:
    query: str
    results: list[TrackHit]
    map_png: bytes | None = None
    """The library map with the query marked, when asked for (`similar(..., with_map=True)`)."""
    resolved: dict[str, Any] | None = None
    """For a streaming service's link: what was analysed instead (`core.resolve.Resolved.to_dict`)."""

    @property
    def same_recording(self) -> TrackHit | None:
        """The library track the query is a copy or excerpt of, if any (always listed first)."""
        return self.results[0] if self.results and self.results[0].same_recording else None

    def to_dict(self) -> dict[str, Any]:
        same = self.same_recording
        doc: dict[str, Any] = {"query": self.query, "same_recording": same.to_dict() if same else None,
                               "results": [r.to_dict() for r in self.results]}
        if self.resolved is not None:
            doc["resolved"] = self.resolved
        return doc


@dataclass(frozen=True)
class MapReport:
    """The library map (PNG bytes) of the guild's served index version, and what it shows."""

    png: bytes
    tracks: int
    version: str
    genres: dict[str, int]
    marked: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"tracks": self.tracks, "version": self.version, "genres": self.genres, "marked": self.marked}


@dataclass(frozen=True)
class HistoryItem:
    at: str
    kind: str
    track_id: int | None
    detail: str
    title: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SCREEN_TRACKS = 8
"""Library tracks, the closest by segment match, whose fingerprints an added track is compared with."""


class Service:
    """Owns the store, the scheduler and the per-guild indexes. Create with `await Service.open(...)`."""

    def __init__(self, settings: Settings, store: Store, jobs: Scheduler,
                 version: asyncio.Future[str]) -> None:
        self.settings = settings
        self.store = store
        self.jobs = jobs
        self.fetches = FetchPool(settings)
        self._members_in_flight: set[int] = set()
        self._indexes: dict[int, tuple[str, Any]] = {}
        """Served index per guild, with the version it was loaded from."""
        self._tag_profiles: dict[int, tuple[Any, Any]] = {}
        """The library's tag profile per guild, with the index version it was read for."""
        self.limits = Limits.of(settings)
        self.library_limits = Limits.of(settings, max_segments=min(settings.library_segments,
                                                                   settings.max_segments))
        self.shelf = shelf_for(store, settings)
        self._version = version
        self._versions = asyncio.ensure_future(self._library_version())
        self.library = Library(settings, store, self._analyse_for_library, self._versions, self.shelf)

    async def _library_version(self) -> str:
        # A track analysed on another number of segments is analysed again, as one from other models is.
        return f"{await self._version}|segments={self.library_limits.max_segments}"

    @classmethod
    async def open(cls, settings: Settings, *, wait_for_workers: bool = True) -> Service:
        """Open the store (applying migrations) and the scheduler. The models are loaded by the workers,
        never in this process, so the bot's event loop never waits on TensorFlow.

        The workers start at once and name the models' version (`models_version`). With
        `wait_for_workers`, open returns once they have (and fails if they cannot); without, it returns
        at once and whatever needs the version waits for it: the command line's `library add` registers
        its files while the workers start (0.45 s: spawn, imports, model loading, warm-up)."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        one_blas_thread()
        store = await Store.connect(settings)
        try:
            jobs = await open_scheduler(settings)
        except BaseException:
            await store.close()
            raise
        version = asyncio.ensure_future(jobs.run(models_version, Limits.of(settings)))
        if wait_for_workers:
            try:
                await version
            except BaseException:
                version.cancel()
                await jobs.close()
                await store.close()
                raise
        return cls(settings, store, jobs, version)

    async def close(self) -> None:
        for starting in (self._version, self._versions):  # nobody needs the version any more
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        await self.fetches.close()
        await self.jobs.close()
        await self.store.close()

    @contextlib.asynccontextmanager
    async def _member(self, user_id: int | None) -> AsyncIterator[None]:
        """One heavy request (analysis, link, library add) per member at a time, in this process; None (the
        command line's own calls) is not limited."""
        if user_id is None:
            yield
            return
        if user_id in self._members_in_flight:
            raise MemberBusy("You already have a request running; wait for its answer, then try again.")
        self._members_in_flight.add(user_id)
        try:
            yield
        finally:
            self._members_in_flight.discard(user_id)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` on a worker, behind the bounded backlog and under the task time bound."""
        return await self.jobs.run(fn, *args, **kwargs)

    @contextlib.asynccontextmanager
    async def _library_exclusive(self, guild_id: int, *, wait: bool) -> AsyncIterator[None]:
        """One add or reindex per guild at a time: in this process (they queue), and across every process
        on the database (a reindex elsewhere refuses this one at once; an add waits for it)."""
        async with self.library.lock(guild_id):
            async with self.store.exclusive(f"library-{guild_id}", wait=wait) as held:
                if not held:
                    raise LibraryBusy("this server's library is being reindexed (started elsewhere); "
                                      "try again when that has finished.")
                yield

    def _staging_dir(self) -> Path:
        path = self.settings.data_dir / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _stage(self, upload: Upload) -> tuple[Path, Path]:
        """Write an upload to a private job folder (blocking file-system work: run it in a thread)."""
        job = Path(tempfile.mkdtemp(prefix="upload-", dir=self._staging_dir()))
        path = job / f"upload{Path(upload.filename).suffix.lower()}"
        try:
            path.write_bytes(upload.data)
        except BaseException:  # a full disk must not leave half an upload behind
            shutil.rmtree(job, ignore_errors=True)
            raise
        return job, path

    async def _with_file(self, item: Item, fn: Callable[[Path, str], Any]) -> Any:
        """Run `fn(path, display_name)` on an upload (staged to a private temp file) or a local path."""
        if isinstance(item, Path):
            return await fn(item, item.name)
        check_extension(item.filename)
        if len(item.data) > self.settings.max_upload_bytes:
            raise TooLarge(f"'{item.filename}' is {len(item.data) / 2**20:.1f} MB; the limit is "
                           f"{self.settings.max_upload_mb:g} MB.")
        job, path = await asyncio.to_thread(self._stage, item)
        try:
            return await fn(path, item.filename)
        finally:
            await asyncio.to_thread(shutil.rmtree, job, ignore_errors=True)

    async def _analyse(self, path: Path, name: str, **what: Any) -> ClipAnalysis:
        return await self._run(analyse, path, self.limits, name=name, **what)

    async def _analyse_for_library(self, path: Path) -> ClipAnalysis:
        return await self._run(analyse, path, self.library_limits, fingerprint=True)

    # -- use cases ----------------------------------------------------------------------------------------
    async def classify(self, item: Item | str, *, guild_id: int | None = None,
                       user_id: int | None = None, with_map: bool = False) -> GenreReport:
        """The genre of an upload, a local file or the audio behind a link (a `str` with a scheme: checked
        and fetched like `/similar`'s links; any other `str` is a path). `with_map` (with a guild) also
        embeds the clip in the same analysis and marks it on the guild's library map, if it has one."""
        with_map = with_map and guild_id is not None
        analyse = partial(self._analyse, genre=True, mood=False, embedding=with_map)
        title: str | None = None
        resolved: dict[str, Any] | None = None
        async with self._member(user_id):
            if isinstance(item, str) and is_link(item):
                title, result, found = await self._with_link(item, analyse)
                resolved = found.to_dict() if found else None
                file = item.strip()
            else:
                result = await self._with_file(Path(item) if isinstance(item, str) else item, analyse)
                file = result.name
        map_png = None
        if with_map:
            try:
                marked = await self._draw_map(guild_id, mark=(title or file, result.embedding))  # type: ignore[arg-type]
                map_png = marked.png
            except EmptyLibrary:  # no library to place it in: the genre answer stands alone
                map_png = None
        report = GenreReport(file=file, genre=result.genre, confidence=result.genre_confidence,
                             top=result.genre_top, segments=result.segments, clip_seconds=result.clip_seconds,
                             model=result.genre_model, sections=result.sections, title=title,
                             resolved=resolved, tags=result.tags, map_png=map_png)
        if guild_id is not None and user_id is not None and result.genre is not None:
            await self.store.log_history(guild_id, user_id, "genre",
                                         [(None, f"{result.name}: {result.genre}")])
        return report

    async def mood(self, item: Item, *, guild_id: int | None = None, user_id: int | None = None) -> MoodReport:
        async with self._member(user_id):
            result: ClipAnalysis = await self._with_file(
                item, lambda p, n: self._analyse(p, n, genre=False, mood=True, embedding=False))
        if guild_id is not None and user_id is not None and result.mood is not None:
            await self.store.log_history(guild_id, user_id, "mood", [(None, f"{result.name}: {result.mood}")])
        return MoodReport(file=result.name, mood=result.mood, confidence=result.mood_confidence,
                          moods=result.mood_scores or {}, gems=result.gems or {}, valence=result.valence,
                          arousal=result.arousal)

    async def _require_track(self, guild_id: int, track_id: int) -> None:
        if await self.store.track(guild_id, track_id) is None:
            raise UnknownTrack(f"there is no track {track_id} in this server's library.")

    async def tag(self, guild_id: int, user_id: int, track_id: int, mood: str) -> str:
        from core.mood import parse_mood

        mood = parse_mood(mood)
        await self._require_track(guild_id, track_id)
        await self.store.add_tag(guild_id, user_id, track_id, mood)
        return mood

    async def feedback(self, guild_id: int, user_id: int, track_id: int, up: bool) -> None:
        await self._require_track(guild_id, track_id)
        await self.store.set_feedback(guild_id, user_id, track_id, 1 if up else -1)

    async def genre_feedback(self, guild_id: int, user_id: int, genre: str, up: bool) -> None:
        """A member's 👍/👎 on a /genre verdict: kept in their history, for judging the model later."""
        await self.store.log_history(guild_id, user_id, "feedback",
                                     [(None, f"genre {genre[:40]}: {'up' if up else 'down'}")])

    async def history(self, guild_id: int, user_id: int, *, limit: int = 20) -> list[HistoryItem]:
        rows = await self.store.history(guild_id, user_id, limit=limit)
        return [HistoryItem(*row) for row in rows]

    async def forget_user(self, guild_id: int, user_id: int) -> int:
        return await self.store.forget_user(guild_id, user_id)

    async def find_tracks(self, guild_id: int, text: str, *, limit: int = 25) -> list[tuple[int, str]]:
        return await self.store.search_titles(guild_id, text[:100], limit=limit)

    async def library_stats(self, guild_id: int) -> dict[str, Any]:
        counts = await self.store.track_counts(guild_id)
        index = await self._index(guild_id)
        return {
            "tracks": sum(counts.values()),
            "ready": counts.get("ready", 0),
            "pending": counts.get("pending", 0),
            "failed": counts.get("failed", 0),
            "indexed": _indexed_tracks(index),
            "index_backend": self.settings.index_backend,
            "analysis_version": await self.library.version(),
        }

    async def add_to_library(self, guild_id: int, sources: Sequence[str | Upload | Path], *,
                             added_by: int | None = None, progress: Progress | None = None,
                             fetch_progress: Progress | None = None) -> AddReport:
        """Register every source (files, folders, uploads, links, playlist links), analysing each new track
        as soon as it is registered (`core.library.Intake`), then update the index. Bad sources, and bad
        entries of a playlist, are reported one by one; they do not stop the others.

        A playlist link has its entries listed without downloading them. Entries already in the library are
        skipped and entries the link pre-check refuses are reported, neither counting against the limit; of
        the others, at most `max_playlist_entries` (over the whole call) are fetched, each as a link of its
        own, so adding the same link again continues with the next ones. `fetch_progress(done, total)`
        follows those downloads; `progress`, the analysis, whose total grows as tracks are registered."""
        report = AddReport()
        room = self.settings.max_playlist_entries
        async with self._member(added_by), self._library_exclusive(guild_id, wait=True):
            screen = await self._same_recording_screen(guild_id)
            async with Intake(self.library, guild_id, progress=progress, screen=screen) as intake:
                try:
                    for source in sources:
                        try:
                            room -= await self._register(guild_id, source, added_by=added_by, report=report,
                                                         room=room, progress=fetch_progress, intake=intake)
                        except UserError as exc:
                            report.failed.append((_describe(source), str(exc)))
                    reindexed = await intake.finish()
                except Exception:
                    await self._take_back_if_the_workers_failed(guild_id, report)
                    raise
            if report.added:
                dropped = {*reindexed.failed_ids, *reindexed.already_there_ids}
                await self.library.discard(guild_id, dropped)
                report.added = [a for a in report.added if a.track_id not in dropped]
                report.failed.extend(reindexed.failed)
                report.already_there.extend(reindexed.already_there)
        return report

    async def _take_back_if_the_workers_failed(self, guild_id: int, report: AddReport) -> None:
        """An add whose workers could not start or name their models (`Service.open` without waiting for
        them) has registered tracks it cannot analyse: they are taken out again, as when open failed
        before registering anything, so that adding them again, once that is fixed, adds them."""
        versions = self._versions
        if versions.done() and not versions.cancelled() and versions.exception() is not None:
            await self.library.discard(guild_id, [a.track_id for a in report.added])

    async def _same_recording_screen(self, guild_id: int) -> Screen:
        """An add's check that a new track is not a song the library already has under another file or
        link (an upload of a song added by link, a re-encoded copy): the same bytes or link are caught at
        registration, another file of the same recording only by its fingerprint, once analysed. As
        /similar does, it compares the fingerprint with the tracks the served index finds nearest the new
        track's segments (so the cost follows the candidates, not the library's size), plus the nearest of
        the tracks this add has taken so far, which the served index does not hold yet: found exactly
        among their segments, as the index would. Of those candidates only the `SCREEN_TRACKS` closest by
        their segments' hits are read and have their fingerprints compared: a copy's sections embed as the
        original's do, so its track is the closest, and comparing every candidate (most of a small
        library) cost the event loop 33 ms a track, 5 s of a 150-track add."""
        from core.segment_match import (
            CANDIDATES_PER_SEGMENT,
            SegmentTable,
            closest_tracks,
            labels_of,
            unit_rows,
        )
        from core.similar import recording_in

        index = await self._index(guild_id)
        taken = SegmentTable()

        async def same_recording(row: TrackRow, result: ClipAnalysis) -> TrackRow | None:
            if result.fingerprint is None:
                return None
            vectors = result.segment_embeddings if result.segment_embeddings is not None else result.embedding
            if vectors is None:
                return None
            query = unit_rows(vectors)
            hits = taken.query(query, CANDIDATES_PER_SEGMENT)
            if index is not None and len(index):
                hits = [mine + served for mine, served in zip(hits, index.query(query, CANDIDATES_PER_SEGMENT))]
            rows = await self.store.tracks_by_id(guild_id, closest_tracks(hits, {row.id}, SCREEN_TRACKS),
                                                 status="ready")
            same = recording_in(result.fingerprint, rows)
            if same is None:
                taken.add(labels_of(row.id, len(query)), query)
            return same

        return same_recording

    async def _register(self, guild_id: int, source: str | Upload | Path, *, added_by: int | None,
                        report: AddReport, room: int, progress: Progress | None, intake: Intake) -> int:
        """Register one source, handing each new track to `intake`; returns how many playlist entries it
        downloaded (0 unless a playlist)."""
        if isinstance(source, Upload):
            await self._with_file(source, lambda p, n: self.library.register_file(
                guild_id, p, source=f"upload:{n}", title=Path(n).stem, added_by=added_by, copy=True,
                report=report, intake=intake))
        elif isinstance(source, str) and is_link(source):
            try:
                await self._register_link(guild_id, source.strip(), None, added_by=added_by, report=report,
                                          intake=intake)
            except PlaylistLink:
                return await self._register_playlist(guild_id, source.strip(), added_by=added_by,
                                                     report=report, room=room, progress=progress,
                                                     intake=intake)
        else:
            await self.library.register_path(guild_id, Path(source), added_by=added_by, report=report,
                                             intake=intake)
        return 0

    async def _register_link(self, guild_id: int, url: str, title: str | None, *, added_by: int | None,
                             report: AddReport, intake: Intake) -> None:
        """One track behind a link; `title` (a playlist's name for it) wins over the site's."""
        self.check_link(url)
        async with self._fetched(url) as (fetched, resolved):
            named = (resolved.artist, resolved.title) if resolved else (fetched.artist, fetched.title)
            await self.library.register_file(guild_id, fetched.path, source=url, title=title or named[1],
                                             artist=named[0], added_by=added_by, copy=True, report=report,
                                             intake=intake)

    async def _register_playlist(self, guild_id: int, url: str, *, added_by: int | None, report: AddReport,
                                 room: int, progress: Progress | None, intake: Intake) -> int:
        playlist = await self.fetches.run(_list_entries, url, self.settings)
        if not playlist.entries:
            report.failed.append((url, "that playlist has no entries."))
            return 0
        new = []
        for entry in playlist.entries:
            if await self.store.find_duplicate(guild_id, source=entry.url, content_hash=None):
                report.duplicates.append(entry.url)
                continue
            try:
                self.check_link(entry.url)  # a private address is refused here, at no cost to the limit
            except UserError as exc:
                report.failed.append((entry.url, str(exc)))
                continue
            new.append(entry)
        taken = new[:max(0, room)]
        unlisted = playlist.total - len(playlist.entries) if playlist.total is not None else 1
        report.left_out += len(new) - len(taken) + unlisted
        report.left_out_is_minimum |= playlist.total is None
        for done, entry in enumerate(taken):
            await report_progress(progress, done, len(taken))
            try:
                await self._register_link(guild_id, entry.url, entry.title, added_by=added_by,
                                          report=report, intake=intake)
            except UserError as exc:  # a private address, a dead link, a playlist inside the playlist…
                report.failed.append((entry.url, str(exc)))
        await report_progress(progress, len(taken), len(taken))
        return len(taken)

    async def reindex(self, guild_id: int, *, full: bool = False, progress: Progress | None = None) -> ReindexReport:
        async with self._library_exclusive(guild_id, wait=False):
            return await self.library.reindex(guild_id, full=full, progress=progress)

    def check_link(self, url: str) -> None:
        """Fast pre-check before queueing work; the authoritative check is made at every connection."""
        from core.netguard import check_url

        check_url(url, self.settings)

    @contextlib.asynccontextmanager
    async def _fetched(self, url: str) -> AsyncIterator[tuple[Any, Any]]:
        """Resolve and download a link in the link workers; its job folder is gone when the block ends.

        Yields (the fetched audio, `core.resolve.Resolved` or None): a streaming service's track link is
        first resolved to the same recording on a site we can download from, and that is fetched."""
        from core.resolve import resolve_link

        resolved = await self.fetches.run(resolve_link, url, self.settings)
        async with self.fetches.fetched(resolved.source_url if resolved else url,
                                        self._staging_dir()) as fetched:
            yield fetched, resolved

    async def _with_link(self, url: str, fn: Callable[[Path, str], Any]) -> tuple[str, Any, Any]:
        """Pre-check `url`, fetch it, and run `fn(path, title)` on the audio; (the site's title, result,
        what a streaming link was resolved to or None)."""
        self.check_link(url)
        async with self._fetched(url) as (fetched, resolved):
            title = resolved.label if resolved else fetched.title or url
            return title, await fn(fetched.path, title), resolved

    async def _index(self, guild_id: int) -> Any:
        """The served index of a guild, or None if none was published yet. Reloaded whenever a newer version
        is on the shelf (published by this process or any other)."""
        from core.index import IndexMismatch

        version = await self.shelf.current(guild_id)
        cached = self._indexes.get(guild_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        if version is None:
            return None
        try:
            version, index = await self.shelf.load(guild_id)
        except IndexMismatch as exc:
            log.warning("index of guild %s is stale (%s); rebuilding it", guild_id, exc)
            await self.library.rebuild_index(guild_id)
            version, index = await self.shelf.load(guild_id)
        self._indexes[guild_id] = (version, index)
        return index

    async def _query_analysis(self, guild_id: int,
                              query: str | Upload | Path) -> tuple[str, Any, int | None, Any]:
        """(display name, the query's analysis, the library track that is this very file or link if any,
        what a streaming link was resolved to or None)."""
        from core.segment_match import QUERY_HOP

        # mood costs nothing after the front-end and lets a reason say "both sound calm"; the genre model
        # reads consecutive sections, which overlapping windows are not
        analyse = partial(self._analyse, genre=False, mood=True, fingerprint=True, hop=QUERY_HOP)
        if isinstance(query, str) and is_link(query):
            _title, result, resolved = await self._with_link(query, analyse)
            same = await self.store.find_duplicate(guild_id, source=query.strip(), content_hash=None)
            return (resolved.label if resolved else query), result, same.id if same else None, resolved
        item: Item = Path(query) if isinstance(query, str) else query
        result = await self._with_file(item, analyse)
        digest = None
        if isinstance(item, Path) and item.is_file():
            from core.library import file_hash

            digest = await asyncio.to_thread(file_hash, item)
        elif isinstance(item, Upload):
            import hashlib

            digest = hashlib.sha256(item.data).hexdigest()
        source = str(item.resolve()) if isinstance(item, Path) else f"upload:{item.filename}"
        same = await self.store.find_duplicate(guild_id, source=source, content_hash=digest)
        return result.name, result, same.id if same else None, None

    async def _library_or_fail(self, guild_id: int) -> Any:
        index = await self._index(guild_id)
        if index is None or len(index) == 0:
            raise EmptyLibrary("the library is empty: an admin can add tracks with /library add "
                               "(or `cratedigger library add PATH_OR_URL`).")
        return index

    async def similar(self, guild_id: int, query: str | Upload | Path, *, k: int = 5,
                      user_id: int | None = None, with_map: bool = False) -> SimilarReport:
        """The k library tracks whose segments best match the query's (core.segment_match), each with a
        reason; a library track that is the query's very recording (the same file, or its
        fingerprint matched: core.similar.recognised) comes first and says so. `with_map` adds the
        library map with the query marked by its track vector (same analysis)."""
        from core.segment_match import (
            CANDIDATES_PER_SEGMENT,
            candidate_tracks,
            rank_tracks,
            unit_rows,
            with_tracks,
        )
        from core.similar import QueryProfile, explain_matches, recognised

        index = await self._library_or_fail(guild_id)
        async with self._member(user_id):
            name, result, same_file, resolved = await self._query_analysis(guild_id, query)
        query_rows = unit_rows(result.segment_embeddings if result.segment_embeddings is not None
                               else result.embedding)
        hits = index.query(query_rows, CANDIDATES_PER_SEGMENT)
        # Only the index's candidates (and the query's very file) are read and compared, so a query's cost
        # follows the candidates, not the library's size: a copy or excerpt of a track has that track's
        # segments among the nearest (hit@5 is 68/68 and 150/150 on the dev libraries).
        candidates = candidate_tracks(hits, exclude=set())
        ready = await self.store.tracks_by_id(
            guild_id, [*candidates, *([same_file] if same_file is not None else [])], status="ready")
        rows = {r.id: r for r in ready}
        nearest = [t for t in candidates if t in rows]
        checked = dict.fromkeys(t for t in (*nearest, same_file) if t is not None and t in rows)
        fingerprinted = recognised(result.fingerprint, [rows[t] for t in checked])
        own = [t for t in (same_file, *fingerprinted) if t is not None and t in rows]
        entries = {t: unit_rows(rows[t].indexed_vectors) for t in dict.fromkeys(nearest + own)}
        matches = with_tracks(query_rows, rank_tracks(query_rows, entries, k), {t: entries[t] for t in own},
                              k)
        tracks = await self._track_infos(guild_id, ready)
        profile = QueryProfile.of(result, title=name)
        explained = explain_matches(matches, tracks, profile, ready,
                                    library=await self._tag_profile(guild_id), same_file=same_file,
                                    fingerprinted=fingerprinted)
        out = [TrackHit(e.track_id, e.title, rows[e.track_id].source, e.score, e.reason, e.same_recording)
               for e in explained if e.track_id in rows]
        if user_id is not None:
            await self.store.log_history(guild_id, user_id, "similar", [(h.track_id, name[:200]) for h in out])
        png = (await self._draw_map(guild_id, mark=(name, result.embedding))).png if with_map else None
        return SimilarReport(query=name, results=out, resolved=resolved.to_dict() if resolved else None,
                             map_png=png)

    async def _tag_profile(self, guild_id: int) -> Any:
        """The library's tag profile (core.similar.tag_profile), read once per published index version:
        every /similar reason needs it, and reading every track's tags at every query would grow with the
        library."""
        from core.similar import tag_profile

        version = await self.shelf.current(guild_id)
        cached = self._tag_profiles.get(guild_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        profile = tag_profile(await self.store.ready_segment_tags(guild_id))
        self._tag_profiles[guild_id] = (version, profile)
        return profile

    async def library_map(self, guild_id: int, *, mark: str | Upload | Path | None = None) -> MapReport:
        """Every analysed track of the served index's version as a point, coloured by genre (cached per
        version); `mark` (a file, upload or link) is analysed and drawn as a star where it falls."""
        marked = None
        if mark is not None:
            await self._library_or_fail(guild_id)
            name, result, _, _ = await self._query_analysis(guild_id, mark)
            marked = (name, result.embedding)
        return await self._draw_map(guild_id, mark=marked)

    async def _draw_map(self, guild_id: int, *, mark: tuple[str, Any] | None) -> MapReport:
        from core.library_map import draw_map

        version = await self.shelf.current(guild_id)
        if version is None:
            await self._library_or_fail(guild_id)  # raises the library-is-empty error
        folder = self.settings.data_dir / "maps" / str(guild_id)
        stem = folder / "".join(c if c.isalnum() or c in "-_." else "_" for c in str(version))
        layout = await self._map_layout(guild_id, stem)
        genres = [g or None for g in layout["genres"].tolist()]
        counts = {g: genres.count(g) for g in sorted(set(genres), key=str) if g}
        title = f"Your library: {len(genres):,} tracks".replace(",", " ")
        if mark is None:
            png_path = stem.with_suffix(".png")
            if not png_path.is_file():
                png = await asyncio.to_thread(draw_map, layout["points"], genres, title=title)
                await asyncio.to_thread(_write_atomically, png_path, png)
            return MapReport(png_path.read_bytes(), len(genres), str(version), counts)
        name, vector = mark
        from core.library_map import Projection

        point = Projection(layout["mean"], layout["components"])(vector)[0]
        png = await asyncio.to_thread(draw_map, layout["points"], genres, title=title, mark=point,
                                      mark_label=Path(name).name[:40] if not is_link(name) else "your link")
        return MapReport(png, len(genres), str(version), counts, marked=name)

    async def _map_layout(self, guild_id: int, stem: Path) -> dict[str, Any]:
        """The version's projected points, genres and projection, computed once per index version."""
        from core.library_map import fit_projection

        cached = stem.with_suffix(".npz")
        if cached.is_file():
            with np.load(cached, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        rows = [r for r in await self.store.tracks(guild_id, status="ready") if r.embedding is not None]
        if not rows:
            await self._library_or_fail(guild_id)
            raise EmptyLibrary("no track of the library is analysed yet: a /library reindex analyses them.")

        def compute() -> dict[str, Any]:
            vectors = np.stack([r.embedding for r in rows]).astype(np.float32)  # type: ignore[misc]
            projection = fit_projection(vectors)
            layout = {"points": projection(vectors), "genres": np.asarray([r.genre or "" for r in rows]),
                      "mean": projection.mean, "components": projection.components}
            cached.parent.mkdir(parents=True, exist_ok=True)
            for old in cached.parent.iterdir():  # older versions' maps are never shown again
                if not old.name.startswith((stem.name + ".", ".")):
                    old.unlink(missing_ok=True)
            tmp = cached.with_name(f".{cached.stem}.{os.getpid()}.tmp.npz")
            np.savez(tmp, **layout)
            tmp.replace(cached)
            return layout

        return await asyncio.to_thread(compute)

    async def _track_infos(self, guild_id: int, rows: Sequence[Any]) -> dict[int, Any]:
        """Analysed tracks whose embedding is of the current kind (older ones wait for a reindex), of the
        ready `rows` the caller read once: a reindex may change a track's status between two reads."""
        from core.embedding import EMBEDDING_KIND
        from core.recommend import TrackInfo

        tags = await self.store.tags(guild_id)
        by_track: dict[int, list[tuple[int, str]]] = {}
        for user, track, mood in tags:
            by_track.setdefault(track, []).append((user, mood))
        return {r.id: TrackInfo.from_row(r, by_track.get(r.id, [])) for r in rows
                if r.embedding is not None and r.embedding_kind == EMBEDDING_KIND}

    async def recommend(self, guild_id: int, user_id: int, mood: str, *, k: int = 5) -> list[TrackHit]:
        from core.mood import parse_mood
        from core.recommend import UserSignals, recommend

        mood = parse_mood(mood)
        await self._library_or_fail(guild_id)
        ready = await self.store.tracks(guild_id, status="ready")
        tracks = await self._track_infos(guild_id, ready)
        signals = UserSignals.from_store(
            user_id,
            feedback=await self.store.feedback(guild_id, user_id),
            history=await self.store.history(guild_id, user_id, limit=500),
        )
        picks = recommend(list(tracks.values()), signals, mood, k)
        rows = {r.id: r for r in ready}
        out = [TrackHit(p.track_id, p.title, rows[p.track_id].source, float(p.score), p.reason) for p in picks]
        await self.store.log_history(guild_id, user_id, "recommended", [(h.track_id, mood) for h in out])
        return out


def _indexed_tracks(index: Any) -> int:
    """How many tracks a segment-level index holds."""
    from core.segment_match import track_of

    return 0 if index is None else len(set(track_of(index.ids()).tolist()))


def _list_entries(url: str, settings: Settings) -> Any:
    """A playlist's entries: a streaming service's album or playlist, else whatever yt-dlp lists."""
    from core.playlist import list_playlist
    from core.resolve import list_streaming

    return list_streaming(url, settings) or list_playlist(url, settings)


def _describe(source: str | Upload | Path) -> str:
    return f"upload:{source.filename}" if isinstance(source, Upload) else str(source)
