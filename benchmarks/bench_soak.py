"""Soak: the real bot and its worker pool answering N interactions of every kind, its memory and event loop
watched throughout, its database and index checked at the end.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_soak.py --interactions 2000 [--concurrency 6]

Three processes (and the bot's children):
- this one: the local Discord server (tests/discord_server), a local HTTP site serving songs for links
  (tests/http_fixture.py), the simulated members, the RSS sampler and the final checks;
- the bot: `cratedigger run` as an operator starts it (the same `bot.launcher.serve`), in a process of
  its own so that its memory is the bot's alone, not the local Discord's records; one task added to its
  loop measures the loop's lag (how late a 10-ms timer fires) and appends each second's samples to a file,
  keeping none in memory;
- its children: the analysis pool (CRATEDIGGER_WORKERS processes) and the chart renderer.

Members run flows of every command, button, page and menu, as people use them: /genre of a file or of a
link and its 👍/👎 buttons; /similar of a file or a link, ▶ and ◀ through its pages and the "Rate a track…"
menu; /recommend and its menu; /tag after the track autocompletes; /history; /forget-me, confirmed or
cancelled; /library add of a file or a link (new songs, and songs already there), /library reindex (now and
then full) and /library stats. Audio is real: the demo clips of the repository, and tones generated here.
Each step is one interaction and is checked against what a member must see (the right embed, page, menu or
line), or an explicit "busy" (the work queue was full; CRATEDIGGER_QUEUE_SIZE is small on purpose so that
this happens). Anything else, an error id, a refused request or no answer, fails the run.

Memory: the RSS of the bot and of every child is sampled every `--sample-seconds` (1 s). After `--warmup`
interactions, each lasting process (the bot, its analysis pool, its chart renderer and its link workers:
those alive from the end of the warm-up to the end) gets the Theil–Sen slope of its RSS against
interactions answered (the median of the slopes between every two of its readings), per 1 000
interactions; the run's slope is the sum of theirs. The processes that live for one request (ffmpeg
converting a link's download) are reported apart. Why this estimator:
- a reading catches a process in the middle of its work: an analysis worker holding a clip's arrays, 10 to
  25 MiB above what it holds between jobs for the half second an analysis takes, the bot an upload. That
  is memory in hand, not kept; a leak raises every reading, in hand or not;
- least squares weighs a reading by its distance from the middle of the run, so one worker caught mid-job
  near the start or the end moved that worker's slope by up to ±3.4 MiB per 1 000 (2 000 runs, 2 s
  sampling), over half the bound, and a 2 000 run passed or failed on where those readings fell;
- for such readings the difference between two of them is as likely to be above the true slope as below,
  however often a worker is caught working, so the median of the pairwise slopes is the trend; it
  equals least squares on a clean line and a leak moves it as fully;
- per process, then summed: a fit of the total would see a spike whenever any of seven processes had one;
- one reading a second rather than two narrows either estimate for the cost of reading /proc;
- reading each worker only between its jobs would give the floor itself, but from outside the bot cannot
  tell when a worker is between jobs, and the bot is never between requests.
The bound, MEMORY_SLOPE_BOUND_MB, is 6 MiB per 1 000 interactions, because:
- what the bot keeps on purpose is bounded by count: /similar pagers (each holds its 20 results and its
  interaction so that ◀ ▶ work) are at most CRATEDIGGER_PAGERS_MAX, which this run sets to
  `--pagers-max` 30, a bound reached within the warm-up (about one interaction in thirteen opens a pager)
  and then exercised (the oldest retired as new ones come); /forget-me prompts end with their answer or
  after 2 minutes;
- a leak of what a request carries grows much faster: an upload (100 kB to 1 MB, one interaction in
  three) 30 to 300 MiB per 1 000, a link's download as much, a report and its pager ~10 MiB;
- below that the figure is noise on a run this short.
So a leak of less than ~6 kB per interaction passes a 2 000 run unseen; run 10 000 to look closer, with
`--pagers-max 200` (the default a server runs with: its bound is reached after ~2 700 interactions). The
link workers grew +3 MiB per 1 000 each (2 000 runs at +9 to +15 in all) until each link job ended with a
garbage collection (core.jobs.fetches: yt-dlp's reference cycles held C memory); since, they stay flat.

`--probe-memory` (slow; its lag and answer times mean nothing) says what grew in the bot: tracemalloc from
the end of the warm-up to the end of the load, live objects by type, discord.py's view store, and how much
of the RSS malloc_trim returns at the end; `benchmarks/soak_probe.py FOLDER` prints it. It found the
pagers (now bounded) and glibc keeping freed large blocks (now mapped apart, core/allocator.py). What the
bot still gains after a 2 000 run's warm-up (+1.5 to +3 MiB per 1 000) is no leak but the run still
settling: probed, no Python type grew but the results the pagers hold (TrackHit +109), discord.py's
stores stayed put (30 views, no cached message, one user), 1.6 MiB of traced growth of which 0.6 MiB
linecache (the source lines of logged tracebacks), and malloc_trim gave back 2 MiB; at 10 000 the bot's
RSS rose 108, 112, 114, 116, 117 MiB over the first five thousands, while the library grew to its ~60
tracks and the pagers to their 200, then stayed at 118 MiB for the last five (slope 0.00 in each).

The event loop: lag p99 < 100 ms, over the whole load.

At the end (the bot stopped with SIGINT, as Ctrl-C does): `PRAGMA integrity_check` and
`foreign_key_check`, no orphan rows (tags, ratings, history of unknown tracks, users or guilds), every track
analysed (none pending), the library exactly the songs the members added (none lost, none doubled), the
served index exactly the library's analysed tracks, no member who chose "Delete my data" left with a row,
no staged upload left in the data folder's tmp/.

Exit 0 only when every interaction got its right answer or "busy", the slope and the lag are within their
bounds and the final checks pass. On a machine shared with other jobs the figures are noisy; the lag and
the timings above all.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

log = logging.getLogger("bench_soak")

MEMORY_SLOPE_BOUND_MB = 6.0
"""MiB per 1 000 interactions of the lasting processes, after the warm-up (the module docstring says why)."""
LAG_P99_BOUND_S = 0.100
LAG_TICK_S = 0.010
ANSWER_TIMEOUT_S = 600.0
"""How long a member waits for an answer before the interaction counts as lost (a full reindex can hold
the analysis pool for a while; the answer must still come)."""
REACTION_S = 0.3
"""A member's time to see a message and press one of its buttons or menus. Without it the member here
clicks within a millisecond of the message existing, before discord.py, which registers a view only once
the HTTP answer to the message's own request is back, knows the view: it then ignores the click (this
run saw 3 of ~600 clicks ignored so), a race no person can win."""
DEMO_CLIPS = sorted((REPO_ROOT / "demo" / "clips").glob("*.ogg"))
BUSY_MARKERS = ("busy", "try again in")


# ----------------------------------------------------------------------------------- the bot's process
async def watch_lag(path: Path) -> None:
    """Append one JSON line a second: the wall time and that second's lag samples (ms). Nothing is kept in
    memory: the samples would otherwise be a leak of this benchmark's own in the bot's RSS."""
    loop = asyncio.get_running_loop()
    batch: list[float] = []
    flushed = time.time()
    with path.open("a", buffering=1) as out:
        while True:
            due = loop.time() + LAG_TICK_S
            await asyncio.sleep(LAG_TICK_S)
            batch.append(round(max(0.0, loop.time() - due) * 1000, 2))
            if time.time() - flushed >= 1.0:
                out.write(json.dumps({"t": time.time(), "lag_ms": batch}) + "\n")
                batch, flushed = [], time.time()


def probe_now(folder: Path) -> None:
    """`--probe-memory`, on each SIGUSR1 from the benchmark (at the end of the warm-up, then once the load
    is over): live objects by type, discord.py's view store and message cache, and the allocations traced
    since the first probe, which starts tracemalloc. So the last snapshot holds exactly what was allocated
    after the warm-up and is still alive: `benchmarks/soak_probe.py FOLDER` ranks it by allocation site.
    The first probe stalls the loop for a moment and tracing slows the bot: a probed run's lag and answer
    times mean nothing."""
    import ctypes
    import gc
    import tracemalloc

    from bot.app import CratediggerBot

    gc.collect()
    objects = gc.get_objects()
    types = Counter(type(o).__name__ for o in objects)
    bots = [o for o in objects if isinstance(o, CratediggerBot)]
    del objects
    record: dict[str, Any] = {"t": time.time(), "rss_kib": rss_kib(os.getpid()), "tasks": len(asyncio.all_tasks()),
                              "objects": dict(types.most_common(60))}
    if bots:
        state = bots[0]._connection
        store = state._view_store
        record["discord"] = {"views": len(store._views), "synced_message_views": len(store._synced_message_views),
                             "messages": len(state._messages or ()), "users": len(state._users)}
    if tracemalloc.is_tracing():
        done = len(list(folder.glob("probe-*.json")))
        tracemalloc.take_snapshot().dump(str(folder / f"probe-{done}.trace"))
        # What the C allocator holds free but has not given back: RSS that malloc_trim returns is not
        # held by anything (asked after the load only: it would bend the curve being measured).
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        record["rss_kib_after_malloc_trim"] = rss_kib(os.getpid())
    else:
        done = 0
        tracemalloc.start(int(os.environ.get("BENCH_SOAK_PROBE_FRAMES", "8")))
    (folder / f"probe-{done}.json").write_text(json.dumps(record))


async def serve_watched(lag_path: Path) -> None:
    from bot.launcher import serve
    from core.config import load_settings

    watcher = asyncio.create_task(watch_lag(lag_path))
    if probe := os.environ.get("BENCH_SOAK_PROBE"):
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, probe_now, Path(probe))
    try:
        await serve(load_settings(env_file=None))
    finally:
        watcher.cancel()


def bot_process_main(lag_path: str) -> int:
    """`bench_soak.py --serve-bot LAG_FILE`: the bot, pointed at the local Discord by the environment.

    SIGINT is given back its default (KeyboardInterrupt, which asyncio turns into a cancelled main task):
    a benchmark started in the background by a shell (`... &`, nohup, a CI step) inherits SIGINT ignored
    and passes that on, and the bot then never stopped when the run ended (the run failed "did not stop
    within 120 s of SIGINT" twice, each time started so)."""
    from core.config import load_settings
    from tests.discord_server.client import routed_to_urls

    signal.signal(signal.SIGINT, signal.default_int_handler)

    logging.basicConfig(level=load_settings(env_file=None).log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with routed_to_urls(os.environ["FAKE_DISCORD_API"], os.environ["FAKE_DISCORD_GATEWAY"]):
        try:
            asyncio.run(serve_watched(Path(lag_path)))
        except KeyboardInterrupt:
            logging.getLogger("bench_soak.bot").info("stopped")
    return 0


# ----------------------------------------------------------------------------------- memory
def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return 0  # a zombie has no VmRSS line


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (/proc/PID/task/TID/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return found


@dataclass
class MemorySample:
    at: float
    answered: int
    rss_kib: dict[int, int]

    @property
    def total_mib(self) -> float:
        return sum(self.rss_kib.values()) / 1024


def lasting_processes(samples: list[MemorySample], warmup: int) -> set[int]:
    """The processes alive from the first sample after the warm-up to the last one."""
    after = [s for s in samples if s.answered >= warmup]
    if not after:
        return set()
    first, last = ({p for p, kib in sample.rss_kib.items() if kib} for sample in (after[0], after[-1]))
    return first & last


def slope_per_1000(samples: list[MemorySample], warmup: int, pid: int) -> float:
    """MiB per 1 000 interactions of process `pid` after the warm-up: the Theil–Sen slope of its RSS against
    interactions answered (the module docstring says why not least squares)."""
    kept = [s for s in samples if s.answered >= warmup]
    xs = np.array([s.answered for s in kept], dtype=float)
    mib = np.array([s.rss_kib.get(pid, 0) / 1024 for s in kept])
    first, second = np.triu_indices(len(kept), k=1)
    apart = xs[second] - xs[first]
    pairs = apart > 0  # two readings with no interaction answered between them say nothing of a slope
    if len(kept) < 3 or not pairs.any():
        return float("nan")
    return float(np.median((mib[second] - mib[first])[pairs] / apart[pairs]) * 1000)


# ----------------------------------------------------------------------------------- outcomes
@dataclass
class Tally:
    """Each interaction's outcome: ok (the right answer), busy (an explicit busy), or a failure."""

    wanted: int
    counts: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    sent: int = 0
    answer_seconds: list[float] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return sum(self.counts.values())

    def take(self) -> bool:
        """Reserve one interaction of the budget; False once N have been sent."""
        if self.sent >= self.wanted:
            return False
        self.sent += 1
        return True

    def record(self, kind: str, outcome: str, detail: str = "", seconds: float | None = None) -> None:
        self.counts[outcome] += 1
        self.by_kind[(kind, outcome)] += 1
        if seconds is not None:
            self.answer_seconds.append(seconds)
        if outcome == "fail":
            self.failures.append(f"{kind}: {detail[:300]}")
            log.error("FAILED %s: %s", kind, detail[:300])


class Busy(Exception):
    """The bot said it was busy: a right answer under load, and the end of that flow."""


class Wrong(Exception):
    """The answer was not what a member must see."""


class Budget(Exception):
    """N interactions have been sent."""


# ----------------------------------------------------------------------------------- the members
@dataclass
class Song:
    name: str
    data: bytes
    title: str
    """The title of its upload (the file's name); its link's is `link_title`."""
    link: str = ""

    @property
    def link_title(self) -> str:
        """What the site calls it: the link's last path part. A linked song is converted on download, so
        its bytes differ from its upload's: the library tells it is the same song by its fingerprint."""
        return self.link.rsplit("/", 1)[-1].rsplit(".", 1)[0]


@dataclass
class World:
    server: Any
    guild: Any
    admin: Any
    songs: Any
    tally: Tally
    demo: list[Song]
    new_songs: list[Song]
    rng: random.Random
    added_titles: set[str] = field(default_factory=set)
    """Titles the library must hold: every song a /library add said it added."""
    adding: set[str] = field(default_factory=set)
    """Songs (by name) a /library add is adding right now: no other member adds the same song, by either
    route, meanwhile."""
    forgotten: set[int] = field(default_factory=set)
    names: int = 0

    def member(self) -> Any:
        self.names += 1
        return self.guild.add_member(self.server.add_user(f"member{self.names}"))

    def library_titles(self) -> list[str]:
        return sorted(self.added_titles)

    def forget(self, ix: Any) -> None:
        """Drop the local Discord's records of a finished interaction, its uploads and files: they are the
        benchmark's, and would grow this process without end."""
        server = self.server
        server.interactions.pop(ix.id, None)
        server._by_token.pop(ix.token, None)
        for option in (ix.payload.get("data") or {}).get("resolved", {}).get("attachments", {}):
            server.cdn.pop(int(option), None)
        for message in ([ix.original] if ix.original else []) + ix.followups:
            if message.interaction_id == ix.id:
                server.messages.pop(message.id, None)
                for attachment in message.attachment_ids:
                    server.cdn.pop(attachment, None)
                message.history.clear()


def text_of(ix: Any) -> str:
    return "\n".join(m.text() for m in ix.messages)


def is_busy(ix: Any) -> bool:
    return any(marker in text_of(ix).lower() for marker in BUSY_MARKERS)


async def step(world: World, kind: str, send: Callable[[], Awaitable[Any]],
               done: Callable[[Any], bool], check: Callable[[Any], None], *,
               timeout: float = ANSWER_TIMEOUT_S, keep: bool = False, react: bool = False) -> Any:
    """One interaction: send it, wait until `done(ix)` (or a refusal), then check what the member sees.
    `react`: it is a click on a message, made a person's reaction time after the message appeared."""
    if not world.tally.take():
        raise Budget
    if react:
        await asyncio.sleep(REACTION_S)
    started = time.monotonic()
    ix = await send()
    try:
        await world.server.wait_for(lambda: bool(ix.refused) or done(ix) or is_busy(ix) or told(ix),
                                    timeout=timeout)
    except TimeoutError:
        world.tally.record(kind, "fail", f"no answer within {timeout:.0f} s; callbacks "
                                         f"{[cb.type for cb in ix.callbacks]}, seen {text_of(ix)[:200]!r}")
        raise Wrong from None
    seconds = time.monotonic() - started
    if ix.refused:
        world.tally.record(kind, "fail", f"Discord refused the bot's request: {ix.refused}")
        raise Wrong
    if is_busy(ix):
        world.tally.record(kind, "busy", seconds=seconds)
        raise Busy
    try:
        check(ix)
    except (AssertionError, KeyError, IndexError) as exc:
        world.tally.record(kind, "fail", f"{exc!r}; seen {text_of(ix)[:300]!r}")
        raise Wrong from None
    world.tally.record(kind, "ok", seconds=seconds)
    if not keep:
        world.forget(ix)
    return ix


def told(ix: Any) -> bool:
    """The member was given a final private line (a refusal or an error), whatever the step waits for."""
    if not ix.messages:
        return False
    last = ix.last()
    return last.ephemeral and not last.embeds and not last.components and "…" not in last.content


def has_embed(ix: Any) -> bool:
    return bool(ix.messages) and bool(ix.last().embeds)


def final_or_failed(ix: Any) -> bool:
    """A progress-showing command's end: its embed, or a stopped/refused line."""
    if not ix.messages:
        return False
    last = ix.last()
    return bool(last.embeds) or last.content.startswith("❌") or (last.ephemeral and "…" not in last.content)


def title(ix: Any) -> str:
    return ix.last().embeds[0].get("title", "")


def fields(ix: Any) -> dict[str, str]:
    """The embed's fields by name (the stats' names are capitalised: looked up in lower case there)."""
    return {f["name"]: f["value"] for f in ix.last().embeds[0].get("fields", [])}


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


async def rate(world: World, member: Any, ix: Any, kind: str) -> None:
    options = ix.last().component("cd:rate")["options"]
    value = world.rng.choice(options)["value"]
    await step(world, f"{kind} rating menu",
               lambda: world.server.select(member, ix.last(), "cd:rate", [value]),
               lambda r: bool(r.messages),
               lambda r: expect(r.last().ephemeral and "noted" in r.last().content, "rating not noted"),
               react=True)


def check_genre(ix: Any) -> None:
    message = ix.last()
    expect(not message.ephemeral and title(ix).startswith("🎧"), "no public genre verdict")
    expect(any(f.filename == "genre.png" for f in message.files), "no chart")
    expect("segments" in message.text(), "no segment count")
    ids = message.custom_ids()
    expect(len(ids) == 2 and ids[0].startswith("cd:genre:up:") and ids[1].startswith("cd:genre:down:"),
           f"feedback buttons: {ids}")


def pick_query(world: World, command: str) -> tuple[str, dict[str, Any]]:
    """A song to ask about, by link two times in five, else uploaded: (step kind, command options)."""
    song = world.rng.choice(world.demo + world.new_songs)
    if world.rng.random() < 0.4:
        return f"/{command} link", {"link": song.link}
    return f"/{command} file", {"file": world.server.attachment(song.name, song.data)}


async def flow_genre(world: World, member: Any) -> None:
    kind, options = pick_query(world, "genre")
    ix = await step(world, kind, lambda: world.server.slash(member, "genre", **options), has_embed,
                    check_genre, keep=True)
    try:
        if world.rng.random() < 0.6:
            button = ix.last().custom_ids()[world.rng.randrange(2)]
            await step(world, "/genre 👍/👎", lambda: world.server.click(member, ix.last(), button),
                       lambda r: bool(r.messages),
                       lambda r: expect(r.last().ephemeral and "Thanks" in r.last().content, "no thanks"),
                       react=True)
    finally:
        world.forget(ix)


async def flow_similar(world: World, member: Any) -> None:
    kind, options = pick_query(world, "similar")

    def check(ix: Any) -> None:
        expect(title(ix).startswith("Tracks like"), "no similar tracks")
        expect("page 1/" in ix.last().embeds[0]["footer"]["text"], "not on page 1")
        expect("cd:rate" in ix.last().custom_ids(), "no rating menu")

    ix = await step(world, kind, lambda: world.server.slash(member, "similar", **options), has_embed, check,
                    keep=True)
    try:
        pages = int(ix.last().embeds[0]["footer"]["text"].split("/")[1].split()[0])
        message = ix.last()
        if pages > 1:
            for button, page in (("cd:similar:next", 2), ("cd:similar:prev", 1)):
                await step(world, f"/similar {'▶' if page == 2 else '◀'}",
                           lambda b=button: world.server.click(member, message, b),
                           lambda r: r.answered,
                           lambda r, p=page: expect(f"page {p}/{pages}" in
                                                    message.embeds[0]["footer"]["text"],
                                                    f"not on page {p}"), react=True)
        if world.rng.random() < 0.5:
            await rate(world, member, ix, "/similar")
    finally:
        world.forget(ix)


async def flow_recommend(world: World, member: Any) -> None:
    mood = world.rng.choice(["calm", "happy", "energetic", "sad", "nostalgic", "tense"])
    count = world.rng.randint(1, 10)

    def check(ix: Any) -> None:
        expect(title(ix) == f"Picked for a {mood} mood", "no recommendation")
        options = ix.last().component("cd:rate")["options"]
        expect(0 < len(options) <= 2 * count, f"{len(options)} rating options for {count} tracks")

    ix = await step(world, "/recommend", lambda: world.server.slash(member, "recommend", mood=mood,
                                                                    count=count), has_embed, check, keep=True)
    try:
        if world.rng.random() < 0.5:
            await rate(world, member, ix, "/recommend")
    finally:
        world.forget(ix)


async def flow_tag(world: World, member: Any) -> None:
    wanted = world.rng.choice(world.library_titles())
    typed = wanted[: world.rng.randint(2, 6)]
    ix = await step(world, "/tag autocomplete",
                    lambda: world.server.autocomplete(member, "tag", "track", track=typed, mood="calm"),
                    lambda r: r.answered,
                    lambda r: expect(any(c["name"] == wanted for c in r.choices) or len(r.choices) == 25,
                                     f"{wanted!r} not offered for {typed!r}: {r.choices}"), keep=True)
    choice = next((c for c in ix.choices if c["name"] == wanted), ix.choices[0])  # 25 shown: pick one
    wanted = choice["name"]
    world.forget(ix)
    mood = world.rng.choice(["calm", "happy", "sad", "tense"])
    await step(world, "/tag", lambda: world.server.slash(member, "tag", track=choice["value"], mood=mood),
               lambda r: bool(r.messages),
               lambda r: expect(r.last().ephemeral and f"as {mood}" in r.last().content, "not tagged"))


async def flow_history(world: World, member: Any) -> None:
    await step(world, "/history", lambda: world.server.slash(member, "history"), has_embed,
               lambda r: expect(r.last().ephemeral and title(r) == "Your history here", "no history"))


async def flow_forget(world: World, member: Any) -> bool:
    """True when the member's data was deleted (the member is then retired)."""
    prompt_ix = await step(world, "/forget-me", lambda: world.server.slash(member, "forget-me"),
                           lambda r: bool(r.messages),
                           lambda r: expect(r.last().ephemeral and "Sure?" in r.last().content, "no prompt"),
                           keep=True)
    prompt = prompt_ix.last()
    confirm = world.rng.random() < 0.5
    try:
        if confirm:
            await step(world, "/forget-me confirm",
                       lambda: world.server.click(member, prompt, "cd:forget:yes"),
                       lambda r: "Done" in prompt.content,
                       lambda r: expect("deleted your tags" in prompt.content, "not deleted"), react=True)
            world.forgotten.add(member.id)
        else:
            await step(world, "/forget-me cancel", lambda: world.server.click(member, prompt, "cd:forget:no"),
                       lambda r: "Cancelled" in prompt.content,
                       lambda r: expect("nothing was deleted" in prompt.content, "not cancelled"), react=True)
    finally:
        world.forget(prompt_ix)
    return confirm


async def flow_library_add(world: World, admin: Any) -> None:
    by_link = world.rng.random() < 0.4
    song = world.rng.choice([s for s in world.new_songs + world.demo if s.name not in world.adding])
    kind = "/library add link" if by_link else "/library add file"
    options = {"link": song.link} if by_link else {"file": world.server.attachment(song.name, song.data)}
    wanted, other = (song.link_title, song.title) if by_link else (song.title, song.link_title)
    known = wanted in world.added_titles  # this very file or link: told by its source or its bytes
    recorded = other in world.added_titles  # the same song by its other route: told by its fingerprint

    def check(ix: Any) -> None:
        got = fields(ix)
        expect(title(ix) == "Library add", "no add report")
        if known:
            expect(got.get("Added (0)") == "none" and got.get("Already there") == "1", f"re-added: {got}")
        elif recorded and wanted not in got.get("Added (1)", ""):
            # the fingerprint misses a few copies, which are then added as tracks of their own
            expect(got.get("Added (0)") == "none" and f"*{other}* is already in the library"
                   in got.get("Already there (1)", ""), f"{wanted} neither added nor named as {other}: {got}")
        else:
            expect(wanted in got.get("Added (1)", ""), f"{wanted} not added: {got}")
            world.added_titles.add(wanted)

    world.adding.add(song.name)
    try:
        await step(world, kind, lambda: world.server.slash(admin, "library add", **options),
                   final_or_failed, check)
    finally:
        world.adding.discard(song.name)


async def flow_reindex(world: World, admin: Any) -> None:
    full = world.rng.random() < 0.2

    def check(ix: Any) -> None:
        if "already running" in ix.last().content:
            return  # another member's reindex holds the library: the right answer
        expect(title(ix) == "Reindex finished", "no reindex report")
        indexed = int(fields(ix)["in the index"])  # adds may finish around it: the final check is exact
        most = 2 * (len(world.demo) + len(world.new_songs))  # each song uploaded and linked
        expect(len(world.demo) <= indexed <= most, f"index of {indexed}")
        expect(not any(name.startswith("failed") for name in fields(ix)), f"failures: {fields(ix)}")

    await step(world, "/library reindex full" if full else "/library reindex",
               lambda: world.server.slash(admin, "library reindex", full=full), final_or_failed, check)


async def flow_stats(world: World, admin: Any) -> None:
    def check(ix: Any) -> None:
        expect(title(ix) == "Library", "no stats")
        got = {name.lower(): value for name, value in fields(ix).items()}
        expect(int(got["tracks"]) >= len(world.demo), f"stats: {got}")

    await step(world, "/library stats", lambda: world.server.slash(admin, "library stats"), has_embed,
               check)


FLOWS: list[tuple[str, float]] = [
    ("genre", 14), ("similar", 16), ("recommend", 16), ("tag", 12), ("history", 10), ("forget", 4),
    ("library add", 5), ("reindex", 1.5), ("stats", 3),
]
"""Relative weights of the flows a member starts (about one interaction in three is heavy analysis)."""


async def member_loop(world: World, seed: int) -> None:
    rng = random.Random(seed)
    member = world.member()
    mods = [r for r in world.guild.roles if r.name == "Mods"]
    world.names += 1  # an admin of each seat: a member may run one request at a time
    admin = world.guild.add_member(world.server.add_user(f"admin{world.names}"), mods)
    names, weights = zip(*FLOWS)
    while True:
        flow = rng.choices(names, weights)[0]
        try:
            if flow == "genre":
                await flow_genre(world, member)
            elif flow == "similar":
                await flow_similar(world, member)
            elif flow == "recommend":
                await flow_recommend(world, member)
            elif flow == "tag":
                await flow_tag(world, member)
            elif flow == "history":
                await flow_history(world, member)
            elif flow == "forget":
                if await flow_forget(world, member):
                    member = world.member()  # gone: someone new takes the seat
            elif flow == "library add":
                await flow_library_add(world, admin)
            elif flow == "reindex":
                await flow_reindex(world, admin)
            else:
                await flow_stats(world, admin)
        except Budget:
            return
        except (Busy, Wrong):
            continue


# ----------------------------------------------------------------------------------- the run
def tone_song(i: int, seconds: float) -> Song:
    from tests.conftest import wav_bytes

    name = f"Generated tone {i:02d}"
    return Song(f"{name}.wav", wav_bytes(seconds, freq=90 * 2 ** (i / 7), seed=1000 + i), name)


def start_bot(folder: Path, env: dict[str, str], lag_path: Path) -> subprocess.Popen[bytes]:
    log_file = open(folder / "bot.log", "wb")
    try:
        return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-bot", str(lag_path)],
                                cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        log_file.close()


async def sample_memory(pid: int, tally: Tally, samples: list[MemorySample], every: float,
                        stop: asyncio.Event) -> None:
    while not stop.is_set():
        sizes = {p: kib for p in descendants(pid) if (kib := rss_kib(p)) is not None}
        samples.append(MemorySample(time.monotonic(), tally.answered, sizes))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def lag_samples(path: Path, since: float) -> list[float]:
    values: list[float] = []
    if path.exists():
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                record = json.loads(line)
                if record["t"] >= since:
                    values += record["lag_ms"]
    return values


def final_checks(settings: Any, guild_id: int, world: World) -> list[str]:
    """What must hold of the database, the index and the data folder once the bot has stopped."""
    from core.embedding import EMBEDDING_KIND
    from core.index import load_index
    from core.segment_match import SEGMENT_KIND, track_of
    from core.shelf import index_dir

    problems: list[str] = []
    with contextlib.closing(sqlite3.connect(settings.db_path)) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchall()
        if integrity != [("ok",)]:
            problems.append(f"integrity_check: {integrity[:5]}")
        foreign = db.execute("PRAGMA foreign_key_check").fetchall()
        if foreign:
            problems.append(f"foreign_key_check: {foreign[:5]}")
        orphans = {
            "tracks of no guild": "SELECT COUNT(*) FROM tracks WHERE guild_id NOT IN (SELECT id FROM guilds)",
            "tags of no track": "SELECT COUNT(*) FROM mood_tags "
                                "WHERE track_id NOT IN (SELECT id FROM tracks)",
            "tags of no user": "SELECT COUNT(*) FROM mood_tags WHERE user_id NOT IN (SELECT id FROM users)",
            "ratings of no track": "SELECT COUNT(*) FROM feedback "
                                   "WHERE track_id NOT IN (SELECT id FROM tracks)",
            "ratings of no user": "SELECT COUNT(*) FROM feedback WHERE user_id NOT IN (SELECT id FROM users)",
            "history of no user": "SELECT COUNT(*) FROM history WHERE user_id NOT IN (SELECT id FROM users)",
            "history of no track": "SELECT COUNT(*) FROM history WHERE track_id IS NOT NULL "
                                   "AND track_id NOT IN (SELECT id FROM tracks)",
            "index versions of no guild": "SELECT COUNT(*) FROM index_versions "
                                          "WHERE guild_id NOT IN (SELECT id FROM guilds)",
        }
        for what, sql in orphans.items():
            count = db.execute(sql).fetchone()[0]
            if count:
                problems.append(f"{count} {what}")
        rows = db.execute("SELECT id, title, status, embedding_kind FROM tracks WHERE guild_id = ?",
                          (guild_id,)).fetchall()
        titles = Counter(r[1] for r in rows)
        if set(titles) != world.added_titles or any(n > 1 for n in titles.values()):
            problems.append(f"library {sorted(titles.items())} is not the {len(world.added_titles)} songs "
                            f"added {sorted(world.added_titles)}")
        not_ready = [r for r in rows if r[2] != "ready"]
        if not_ready:
            problems.append(f"{len(not_ready)} tracks not analysed: {not_ready[:5]}")
        for user in world.forgotten:
            left = sum(db.execute(f"SELECT COUNT(*) FROM {table} WHERE user_id = ?", (user,)).fetchone()[0]
                       for table in ("mood_tags", "feedback", "history"))
            if left:
                problems.append(f"member {user} chose 'Delete my data' and still has {left} rows")
        ready = {r[0] for r in rows if r[2] == "ready" and r[3] == EMBEDDING_KIND}
    labels = load_index(index_dir(settings, guild_id), expected_kind=SEGMENT_KIND).ids()
    served = set(track_of(labels).tolist())
    if served != ready:
        problems.append(f"index holds {len(served)} tracks, the library {len(ready)} analysed ones "
                        f"(only in the index {sorted(served - ready)[:5]}, "
                        f"missing {sorted(ready - served)[:5]})")
    staged = list((settings.data_dir / "tmp").glob("*")) if (settings.data_dir / "tmp").exists() else []
    if staged:
        problems.append(f"{len(staged)} staged files left in tmp/: {staged[:3]}")
    return problems


async def run(args: argparse.Namespace) -> int:
    from bot.launcher import sync
    from core.config import load_settings
    from tests.discord_server import MANAGE_GUILD, FakeDiscord, routed_to
    from tests.http_fixture import LocalHTTPServer
    from tests.processes import process_env

    server = FakeDiscord()
    await server.start()
    guild = server.add_guild("Soak")
    admin = guild.add_member(server.add_user("admin"), [guild.add_role("Mods", MANAGE_GUILD)])
    songs = LocalHTTPServer().start()
    rng = random.Random(args.seed)
    demo = [Song(p.name, p.read_bytes(), p.stem) for p in DEMO_CLIPS]
    new = [tone_song(i, seconds=rng.uniform(4, 12)) for i in range(args.new_songs)]
    for song in demo + new:
        kind = "audio/ogg" if song.name.endswith(".ogg") else "audio/wav"
        song.link = songs.add_file(f"songs/link-{song.name.replace(' ', '-')}", song.data, kind)
    folder = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    lag_path = folder / "lag.jsonl"
    settings_env = {
        "CRATEDIGGER_DATA_DIR": folder / "data", "DISCORD_TOKEN": server.token,
        "CRATEDIGGER_WORKERS": args.workers, "CRATEDIGGER_QUEUE_SIZE": args.queue_size,
        "CRATEDIGGER_USER_COOLDOWN_SECONDS": 0, "CRATEDIGGER_FETCH_ALLOW_HOSTS": songs.netloc,
        "CRATEDIGGER_LOG_LEVEL": "WARNING", "CRATEDIGGER_PAGERS_MAX": args.pagers_max,
        "FAKE_DISCORD_API": server.api_base,
        "FAKE_DISCORD_GATEWAY": server.gateway_url,
    }
    env = process_env(**settings_env)
    if args.probe_memory:
        env["BENCH_SOAK_PROBE"] = str(folder)
    os.environ.update({k: str(v) for k, v in settings_env.items() if not k.startswith("FAKE_")})
    settings = load_settings(env_file=None)
    with routed_to(server):
        await sync(settings)
    tally = Tally(args.interactions)
    world = World(server, guild, admin, songs, tally, demo, new, rng)
    bot = start_bot(folder, env, lag_path)
    samples: list[MemorySample] = []
    stop = asyncio.Event()
    sampler: asyncio.Task[None] | None = None
    problems: list[str] = []
    try:
        await server.wait_ready(timeout=600)
        log.info("bot ready (pid %d); data in %s", bot.pid, folder)
        started_wall, started = time.time(), time.monotonic()
        sampler = asyncio.create_task(sample_memory(bot.pid, tally, samples, args.sample_seconds, stop))
        for song in demo:  # the library to start with: every demo clip, added by the admin
            with contextlib.suppress(Busy, Wrong):
                await step(world, "/library add file", lambda s=song: server.slash(
                    admin, "library add", file=server.attachment(s.name, s.data)), final_or_failed,
                    lambda ix, s=song: (expect(s.title in fields(ix).get("Added (1)", ""), "not added"),
                                        world.added_titles.add(s.title)))
        if not world.added_titles:
            raise RuntimeError("no demo clip could be added: see bot.log")
        progress = asyncio.create_task(report_progress(tally, started))
        probed = asyncio.create_task(probe_after(warmup_of(args), tally, bot.pid, folder)) \
            if args.probe_memory else None
        await asyncio.gather(*(member_loop(world, args.seed * 1000 + i) for i in range(args.concurrency)))
        progress.cancel()
        if probed is not None:
            await probed
            await probe(bot.pid, folder, 1)
        wall = time.monotonic() - started
        stop.set()
        await sampler
        lags = lag_samples(lag_path, started_wall)
    finally:
        stop.set()
        if bot.poll() is None:
            bot.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(bot.wait, 120)
            except subprocess.TimeoutExpired:
                problems.append("the bot did not stop within 120 s of SIGINT")
                os.killpg(bot.pid, signal.SIGKILL)
        songs.stop()
        await server.stop()
    problems += final_checks(settings, guild.id, world)
    bot_log = (folder / "bot.log").read_text(errors="replace")
    bugs = bot_log.count("unexpected error")
    if bugs:
        problems.append(f"{bugs} unexpected errors in bot.log")
    return report(args, tally, samples, lags, wall, problems, folder)


async def probe(pid: int, folder: Path, number: int) -> None:
    """Ask the bot for its `probe_now` number `number` and wait until it is written."""
    os.kill(pid, signal.SIGUSR1)
    while not (folder / f"probe-{number}.json").exists():
        await asyncio.sleep(0.5)


async def probe_after(warmup: int, tally: Tally, pid: int, folder: Path) -> None:
    while tally.answered < warmup:
        await asyncio.sleep(0.5)
    await probe(pid, folder, 0)


def warmup_of(args: argparse.Namespace) -> int:
    return args.warmup if args.warmup is not None else max(200, args.interactions // 4)


async def report_progress(tally: Tally, started: float) -> None:
    while True:
        await asyncio.sleep(60)
        rate_ = tally.answered / max(1e-9, time.monotonic() - started)
        log.warning("%d/%d interactions answered (%.1f/s), %s", tally.answered, tally.wanted, rate_,
                    dict(tally.counts))


def report(args: argparse.Namespace, tally: Tally, samples: list[MemorySample], lags: list[float],
           wall: float, problems: list[str], folder: Path) -> int:
    warmup = warmup_of(args)
    lasting = lasting_processes(samples, warmup)
    slopes = {pid: slope_per_1000(samples, warmup, pid) for pid in sorted(lasting)}
    slope = sum(slopes.values()) if slopes else float("nan")
    print(f"soak: {tally.answered} interactions in {wall / 60:.1f} min ({tally.answered / wall:.2f}/s), "
          f"{args.concurrency} members at a time, workers={args.workers}, queue_size={args.queue_size}, "
          f"pagers_max={args.pagers_max}")
    print(f"answers: ok {tally.counts['ok']}, busy {tally.counts['busy']}, failed {tally.counts['fail']}")
    for kind in sorted({k for k, _ in tally.by_kind}):
        parts = ", ".join(f"{o} {tally.by_kind[(kind, o)]}" for o in ("ok", "busy", "fail")
                          if tally.by_kind[(kind, o)])
        print(f"  {kind:26s} {parts}")
    if tally.answer_seconds:
        print(f"answer time: p50 {np.percentile(tally.answer_seconds, 50):.2f} s, "
              f"p95 {np.percentile(tally.answer_seconds, 95):.2f} s, max {max(tally.answer_seconds):.1f} s")
    if samples:
        first, last = samples[0], samples[-1]
        print(f"RSS (bot + {len(last.rss_kib) - 1} children): start {first.total_mib:.0f} MiB, "
              f"end {last.total_mib:.0f} MiB, max {max(s.total_mib for s in samples):.0f} MiB; "
              f"{len(samples)} samples")
        print(f"memory slope after {warmup} interactions, {len(lasting)} lasting processes: {slope:+.2f} MiB "
              f"per 1 000 interactions (Theil-Sen, summed per process; bound {MEMORY_SLOPE_BOUND_MB:g})")
        transient = {p for s in samples for p in s.rss_kib} - lasting
        print(f"  {len(transient)} processes lived for part of the run only (a link's ffmpeg, …): at most "
              f"{max(sum(s.rss_kib.get(p, 0) for p in transient) for s in samples) / 1024:.0f} MiB at once")
        for pid, own in slopes.items():
            role = "bot" if pid == min(last.rss_kib) else "child"
            print(f"  pid {pid} ({role}): {last.rss_kib[pid] / 1024:.0f} MiB at the end, slope {own:+.2f}")
        curve = folder / "memory.tsv"
        pids = sorted({p for s in samples for p in s.rss_kib})
        curve.write_text("seconds\tanswered\ttotal_mib\t" + "\t".join(f"pid{p}_mib" for p in pids) + "\n"
                         + "".join(f"{s.at - first.at:.1f}\t{s.answered}\t{s.total_mib:.1f}\t"
                                   + "\t".join(f"{s.rss_kib.get(p, 0) / 1024:.1f}" for p in pids) + "\n"
                                   for s in samples))
        print(f"  memory curve: {curve}")
    p99 = float(np.percentile(lags, 99)) / 1000 if lags else float("nan")
    if lags:
        print(f"event-loop lag: p50 {np.percentile(lags, 50):.1f} ms, p99 {p99 * 1000:.1f} ms, "
              f"max {max(lags):.0f} ms over {len(lags)} ticks (bound p99 < {LAG_P99_BOUND_S * 1000:.0f} ms)")
    print("final checks: " + ("database and index consistent" if not problems else "; ".join(problems)))
    missed = []
    if tally.counts["fail"] or tally.answered < tally.wanted:
        missed.append(f"{tally.counts['fail']} wrong or lost answers" +
                      "".join(f"\n    {f}" for f in tally.failures[:10]))
    if not slope < MEMORY_SLOPE_BOUND_MB:
        missed.append("memory slope")
    if not p99 < LAG_P99_BOUND_S:
        missed.append("loop lag")
    if problems:
        missed.append("final checks")
    print("targets: " + ("all met" if not missed else "MISSED " + "; ".join(missed)))
    print(f"logs and data: {folder}")
    return 1 if missed else 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-bot":
        return bot_process_main(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=6, help="members interacting at the same time")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queue-size", type=int, default=6,
                        help="the work queue's bound: small, so that 'busy' happens under load")
    parser.add_argument("--new-songs", type=int, default=24, help="generated songs members may add")
    parser.add_argument("--warmup", type=int, default=None,
                        help="interactions before the memory fit (default: a quarter, at least 200)")
    parser.add_argument("--sample-seconds", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pagers-max", type=int, default=30,
                        help="CRATEDIGGER_PAGERS_MAX: small, so that the pagers are at their bound before "
                             "the warm-up ends")
    parser.add_argument("--probe-memory", action="store_true",
                        help="trace the bot's allocations and live objects into probe.jsonl (slows it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
