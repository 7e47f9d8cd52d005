"""Faults under load: the scaled deployment, every part real and in its own process, loses a process to
SIGKILL in turn while members use it and a reindex runs; a supervisor starts each again.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_faults.py [--members 3] [--settle 20]

The deployment (README, "Running at scale"), on loopback ports:

    PostgreSQL ─┬─ `cratedigger run`, shard 0 of 2 ─┐
    Redis ──────┼─ `cratedigger run`, shard 1 of 2 ─┼── local Discord server (this process)
                ├─ `cratedigger worker` ────────────┘
                └─ `cratedigger worker`

PostgreSQL and Redis are Debian's `postgresql` and `redis-server` (`.ci/run` installs them). Redis runs
without persistence (no RDB, no AOF), as tests/servers.py starts it: what a restart does to queued jobs is
decided in the bots, not in Redis's configuration. A request waiting on a job rides through the outage and
submits its job again when Redis comes back without it (core/jobs/queue.py); a job that was running is
analysed once more, its result written once by the bot that asked. Persistence (appendonly) would keep
the queue too, but an `appendfsync everysec` AOF still loses the last second, so re-submitting is needed
anyway, and with it persistence buys nothing for a queue whose every job has a waiter.

Members of a guild on each shard run a mixed load (/genre and /similar of an uploaded clip, /recommend,
/tag, /history, /library add of new songs) while the admin of shard 0's guild reindexes it in full, again
and again. The supervisor here restarts any process that exits, one second later, as systemd's
`Restart=always` would. In turn, each after the deployment has settled: SIGKILL to bot shard 1 (its whole
process group), to a worker (with its pool), to Redis, and to PostgreSQL (the postmaster and its backends).

Every request is classified: answered (the right embed), told it failed (a private line: busy, an error,
"stopped", "lost, send it again"), not delivered (its shard had no gateway session: Discord shows the
member "This interaction failed" at once), unacknowledged (dispatched to a session whose process had just
died: Discord shows "The application did not respond" after 3 s) or lost (acknowledged, then nothing,
or a reply Discord refused). Only the last breaks "nothing accepted is lost". Each kill's cost:
recovery time (from the kill until both shards answer a /similar probe again, which needs the gateway, the
database, the index, the queue and a worker) and the requests of its window by class.

Exit 0 only when nothing is lost, nothing is doubled (one track per song, the served index exactly the
library's analysed tracks, history rows no more than the requests that write them), every process is
running again, and each shard answers at the end. Figures are from a machine shared with other jobs.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.conftest import wav_bytes  # noqa: E402
from tests.discord_server import MANAGE_GUILD, FakeDiscord  # noqa: E402
from tests.processes import Process, process_env, start, start_worker  # noqa: E402
from tests.servers import REDIS_PASSWORD, free_port, init_postgres, start_postgres, start_redis  # noqa: E402

log = logging.getLogger("bench_faults")

RESTART_DELAY_S = 1.0
"""How long the supervisor waits before starting a process that exited (systemd's RestartSec=1)."""
ANSWER_TIMEOUT_S = 420.0
"""After this long with no final answer a request counts as lost (QUEUE_WAIT_SECONDS is below it)."""
RECOVERY_TIMEOUT_S = 300.0
DEMO_CLIPS = sorted((REPO_ROOT / "demo" / "clips").glob("*.ogg"))


# ---------------------------------------------------------------------------------------- processes
@dataclass
class Supervised:
    """One process the supervisor keeps running: `launch()` starts it (in its own process group)."""

    name: str
    launch: Callable[[], subprocess.Popen[bytes]]
    popen: subprocess.Popen[bytes] | None = None
    starts: list[float] = field(default_factory=list)
    deaths: list[float] = field(default_factory=list)
    group: bool = True
    """Kill its process group (the process and its children), or only the process."""
    held: bool = False
    """True while a kill is being made: the supervisor waits for the kill to finish."""

    def start(self) -> None:
        self.popen = self.launch()
        self.starts.append(time.monotonic())
        log.info("started %s (pid %d)", self.name, self.popen.pid)

    def kill(self) -> float:
        """SIGKILL its whole process group, as a lost machine or the OOM killer of a service would."""
        assert self.popen is not None
        self.held = True
        at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            if self.group:
                os.killpg(self.popen.pid, signal.SIGKILL)
            else:
                self.popen.kill()
        self.popen.wait(timeout=60)
        self.held = False
        return at

    def stop(self) -> None:
        self.held = True
        if self.popen is not None and self.popen.poll() is None:
            kill = os.killpg if self.group else os.kill
            with contextlib.suppress(ProcessLookupError):
                kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=30)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


async def supervise(processes: list[Supervised], stop: asyncio.Event) -> None:
    """Start again, after RESTART_DELAY_S, any process that exited."""
    while not stop.is_set():
        for proc in processes:
            if proc.popen is not None and proc.popen.poll() is not None and not proc.held:
                proc.deaths.append(time.monotonic())
                log.warning("%s exited (%s); restarting it in %.0f s", proc.name, proc.popen.returncode,
                            RESTART_DELAY_S)
                proc.held = True
                while not stop.is_set():
                    await asyncio.sleep(RESTART_DELAY_S)
                    try:
                        await asyncio.to_thread(proc.start)
                        break
                    except Exception as exc:  # noqa: BLE001 - a supervisor tries again, as systemd does
                        log.warning("%s did not start (%s); trying again", proc.name, exc)
                proc.held = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


# ---------------------------------------------------------------------------------------- requests
@dataclass
class Request:
    kind: str
    shard: int
    sent_at: float
    outcome: str = "pending"
    """answered | told | undelivered | unacknowledged | lost"""
    detail: str = ""


@dataclass
class World:
    server: FakeDiscord
    guilds: dict[int, Any]
    admins: dict[int, Any]
    clips: list[tuple[str, bytes]]
    requests: list[Request] = field(default_factory=list)
    added: dict[int, set[str]] = field(default_factory=dict)
    """Per shard, titles a /library add said it added."""
    attempted: dict[int, set[str]] = field(default_factory=dict)
    writes: Counter[tuple[int, str]] = field(default_factory=Counter)
    """(user id, history kind) -> requests sent that may write such rows."""
    songs: int = 0
    names: int = 0

    def member(self, shard: int) -> Any:
        self.names += 1
        return self.guilds[shard].add_member(self.server.add_user(f"member{self.names}"))


def text_of(ix: Any) -> str:
    return "\n".join(m.text() for m in ix.messages)


def settled(ix: Any) -> bool:
    """A final answer: an embed, or a line that is not progress."""
    if ix.refused:
        return True
    if not ix.messages:
        return False
    last = ix.last()
    return bool(last.embeds) or "…" not in last.content


async def ask(world: World, shard: int, member: Any, kind: str, command: str,
              good: Callable[[Any], bool], **options: Any) -> tuple[Request, Any]:
    """Send one command and classify how it ended."""
    request = Request(kind, shard, time.monotonic())
    world.requests.append(request)
    try:
        ix = await world.server.slash(member, command, **options)
    except AssertionError as exc:  # no session for the shard: Discord tells the member at once
        request.outcome, request.detail = "undelivered", str(exc)
        return request, None
    deadline = world.server.ack_deadline or 3.0
    try:  # Discord shows "The application did not respond" to an interaction no bot acknowledged in time
        await world.server.wait_for(lambda: bool(ix.callbacks) or settled(ix), timeout=deadline + 1.0)
    except TimeoutError:
        request.outcome, request.detail = "unacknowledged", "its shard's process had just died"
        return request, ix
    try:
        await world.server.wait_for(lambda: settled(ix), timeout=ANSWER_TIMEOUT_S)
    except TimeoutError:
        request.outcome = "lost"
        request.detail = f"no final answer in {ANSWER_TIMEOUT_S:.0f} s; seen {text_of(ix)[:150]!r}"
        return request, ix
    if ix.refused:
        request.outcome, request.detail = "lost", f"Discord refused the bot's reply: {ix.refused}"
    elif good(ix):
        request.outcome = "answered"
    else:
        request.outcome, request.detail = "told", text_of(ix)[:200]
    return request, ix


def embed_title(ix: Any) -> str:
    return ix.last().embeds[0].get("title", "") if ix.last().embeds else ""


def new_song(world: World) -> tuple[str, bytes]:
    world.songs += 1
    n = world.songs
    return f"Fault song {n:03d}", wav_bytes(5, freq=100 + 13 * n, seed=5000 + n)


async def member_load(world: World, shard: int, seed: int, stop: asyncio.Event) -> None:
    rng = random.Random(seed)
    member = world.member(shard)
    server = world.server
    while not stop.is_set():
        pick = rng.random()
        name, data = rng.choice(world.clips)
        if pick < 0.2:
            world.writes[(member.id, "genre")] += 1
            await ask(world, shard, member, "/genre", "genre", lambda ix: embed_title(ix).startswith("🎧"),
                      file=server.attachment(name, data))
        elif pick < 0.4:
            world.writes[(member.id, "similar")] += 1
            await ask(world, shard, member, "/similar", "similar",
                      lambda ix: embed_title(ix).startswith("Tracks like"),
                      file=server.attachment(name, data))
        elif pick < 0.6:
            world.writes[(member.id, "recommended")] += 1
            await ask(world, shard, member, "/recommend", "recommend",
                      lambda ix: embed_title(ix).startswith("Picked for"), mood=rng.choice(["calm", "happy"]))
        elif pick < 0.75:
            track = rng.choice(sorted(world.added[shard]))
            await ask(world, shard, member, "/tag", "tag", lambda ix: "Tagged" in ix.last().content,
                      track=track, mood="sad")
        elif pick < 0.9:
            await ask(world, shard, member, "/history", "history",
                      lambda ix: embed_title(ix) == "Your history here")
        else:
            title, song = new_song(world)
            world.attempted[shard].add(title)
            request, ix = await ask(world, shard, world.admins[shard], "/library add", "library add",
                                    lambda ix: embed_title(ix) == "Library add",
                                    file=server.attachment(f"{title}.wav", song))
            if request.outcome == "answered" and title in text_of(ix):
                world.added[shard].add(title)
        await asyncio.sleep(rng.uniform(0.2, 1.0))
        if world.requests[-1].outcome == "undelivered":
            await asyncio.sleep(1.0)


async def reindex_load(world: World, stop: asyncio.Event) -> None:
    """The admin of shard 0's guild reindexes it in full, again and again."""
    while not stop.is_set():
        await ask(world, 0, world.admins[0], "/library reindex", "library reindex",
                  lambda ix: embed_title(ix) == "Reindex finished", full=True)
        await asyncio.sleep(1.0)


async def probe(world: World, shard: int, clip: tuple[str, bytes]) -> bool:
    member = world.member(shard)
    request, _ = await ask(world, shard, member, "probe /similar", "similar",
                           lambda ix: embed_title(ix).startswith("Tracks like"),
                           file=world.server.attachment(*clip))
    world.writes[(member.id, "similar")] += 1
    return request.outcome == "answered"


async def until_answering(world: World, since: float) -> float:
    """Seconds from `since` until both shards answer a /similar probe sent after it."""
    clip = world.clips[0]
    pending = {0, 1}
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while pending and time.monotonic() < deadline:
        results = await asyncio.gather(*(probe(world, s, clip) for s in sorted(pending)))
        pending = {s for s, ok in zip(sorted(pending), results) if not ok}
        if pending:
            await asyncio.sleep(1.0)
    if pending:
        raise RuntimeError(f"shards {sorted(pending)} did not answer within {RECOVERY_TIMEOUT_S:.0f} s")
    return time.monotonic() - since


# ---------------------------------------------------------------------------------------- checks
async def final_checks(world: World, db_url: str, settings_dir: Path) -> list[str]:
    from core.config import Settings
    from core.embedding import EMBEDDING_KIND
    from core.segment_match import track_of
    from core.shelf import shelf_for
    from core.store import Store

    problems: list[str] = []
    store = await Store.open_url(db_url)
    try:
        if not await store.integrity_ok():
            problems.append("database integrity check failed")
        shelf = shelf_for(store, Settings(data_dir=settings_dir))
        for shard, guild in world.guilds.items():
            rows = await store.tracks(guild.id)
            titles = Counter(r.title for r in rows)
            doubled = {t: n for t, n in titles.items() if n > 1}
            if doubled:
                problems.append(f"shard {shard}: tracks doubled {doubled}")
            missing = world.added[shard] - set(titles)
            if missing:
                problems.append(f"shard {shard}: songs told added are missing: {sorted(missing)}")
            strays = set(titles) - world.attempted[shard]
            if strays:
                problems.append(f"shard {shard}: tracks nobody added: {sorted(strays)}")
            not_ready = [r.title for r in rows if r.status != "ready"]
            if not_ready:
                problems.append(f"shard {shard}: not analysed after the last reindex: {not_ready}")
            ready = {r.id for r in rows if r.status == "ready" and r.embedding_kind == EMBEDDING_KIND}
            _, index = await shelf.load(guild.id)
            served = set(track_of(index.ids()).tolist())  # the index holds every segment of a track
            if served != ready:
                problems.append(f"shard {shard}: index holds {len(served)} tracks, the library {len(ready)}")
        for (user, kind), sent in world.writes.items():
            rows = await store._all("SELECT COUNT(DISTINCT created_at) FROM history "
                                    "WHERE user_id = ? AND kind = ?", (user, kind))
            if rows[0][0] > sent:
                problems.append(f"user {user}: {rows[0][0]} {kind} history entries for {sent} requests")
    finally:
        await store.close()
    return problems


# ---------------------------------------------------------------------------------------- the drill
async def drill(args: argparse.Namespace) -> int:
    home = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    os.chmod(home, 0o755)
    pg_home = home / "pg"
    pg_home.mkdir()
    postgres = await asyncio.to_thread(init_postgres, pg_home)
    pg = Supervised("postgresql", lambda: start_postgres(postgres, durable=True))
    await asyncio.to_thread(pg.start)
    db_url = await asyncio.to_thread(postgres.new_database)  # with amcheck, for the integrity check
    redis_home = home / "redis"
    redis_home.mkdir()
    redis_port = free_port()
    redis = Supervised("redis", lambda: start_redis(redis_home, redis_port), group=False)
    await asyncio.to_thread(redis.start)
    broker_url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/0"

    server = FakeDiscord(shard_count=2)
    await server.start()
    guilds, admins = {}, {}
    for shard in (0, 1):
        guilds[shard] = server.add_guild(f"Guild on shard {shard}", shard=shard)
        admins[shard] = guilds[shard].add_member(server.add_user(f"admin{shard}"),
                                                 [guilds[shard].add_role("Mods", MANAGE_GUILD)])
    clips = [(p.name, p.read_bytes()) for p in DEMO_CLIPS]
    world = World(server, guilds, admins, clips, added={0: set(), 1: set()}, attempted={0: set(), 1: set()})

    def bot_env(name: str, **more: object) -> dict[str, str]:
        return process_env(CRATEDIGGER_DATABASE_URL=db_url, CRATEDIGGER_BROKER_URL=broker_url,
                           CRATEDIGGER_DATA_DIR=home / name, CRATEDIGGER_WORKERS=2,
                           CRATEDIGGER_USER_COOLDOWN_SECONDS=0, CRATEDIGGER_TASK_TIMEOUT_SECONDS=60,
                           CRATEDIGGER_QUEUE_WAIT_SECONDS=300, CRATEDIGGER_QUEUE_SIZE=64,
                           CRATEDIGGER_LOG_LEVEL="INFO", DISCORD_TOKEN=server.token,
                           FAKE_DISCORD_API=server.api_base, FAKE_DISCORD_GATEWAY=server.gateway_url, **more)

    def log_of(name: str) -> Path:
        """A log file per start: bot0.log, bot0.2.log after its first restart, …"""
        n = len(list(home.glob(f"{name}*.log")))
        return home / (f"{name}.log" if n == 0 else f"{name}.{n + 1}.log")

    def bot_launcher(shard: int) -> Callable[[], subprocess.Popen[bytes]]:
        return lambda: start(["run"], bot_env(f"bot{shard}", CRATEDIGGER_SHARD_COUNT=2,
                                              CRATEDIGGER_SHARD_IDS=shard),
                             log_of(f"bot{shard}"), module="tests.routed_cratedigger").popen

    def worker_launcher(n: int) -> Callable[[], subprocess.Popen[bytes]]:
        return lambda: start_worker(log_of(f"worker{n}"), home / f"worker{n}", broker_url,
                                    CRATEDIGGER_WORKERS=1, CRATEDIGGER_TASK_TIMEOUT_SECONDS=60).popen

    workers = [Supervised(f"worker {n}", worker_launcher(n)) for n in (0, 1)]
    bots = [Supervised(f"bot shard {s}", bot_launcher(s)) for s in (0, 1)]
    everything = [pg, redis, *workers, *bots]
    stop_supervisor, stop_load = asyncio.Event(), asyncio.Event()
    costs: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        for proc in workers:
            await asyncio.to_thread(proc.start)
        await Process(workers[0].popen, home / "worker0.log").wait_for_log("worker ready", timeout=300)
        sync = start(["sync-commands"], bot_env("sync"), home / "sync.log", module="tests.routed_cratedigger")
        if await asyncio.to_thread(sync.popen.wait, 300) != 0:
            raise RuntimeError(sync.text())
        for proc in bots:
            await asyncio.to_thread(proc.start)
        supervisor = asyncio.create_task(supervise(everything, stop_supervisor))
        await server.wait_shards(timeout=300)
        log.warning("deployment up in %s", home)
        for shard in (0, 1):  # every demo clip in each guild's library
            for name, data in clips:
                title = Path(name).stem
                world.attempted[shard].add(title)
                request, ix = await ask(world, shard, admins[shard], "/library add", "library add",
                                        lambda ix: embed_title(ix) == "Library add",
                                        file=server.attachment(name, data))
                if request.outcome == "answered":
                    world.added[shard].add(title)
        load = [asyncio.create_task(member_load(world, s, 100 * s + i, stop_load))
                for s in (0, 1) for i in range(args.members)]
        load.append(asyncio.create_task(reindex_load(world, stop_load)))
        await asyncio.sleep(args.settle)
        steady = await until_answering(world, time.monotonic())
        log.warning("steady: both shards answer a probe in %.1f s", steady)
        victims = [("bot shard 1", bots[1]), ("worker 0", workers[0]), ("redis", redis), ("postgresql", pg)]
        for label, victim in victims:
            await asyncio.sleep(args.settle)
            restarts_before = len(victim.starts)
            killed_at = await asyncio.to_thread(victim.kill)
            log.warning("killed %s", label)
            recovery = await until_answering(world, killed_at)
            for _ in range(int(RECOVERY_TIMEOUT_S * 10)):
                if len(victim.starts) > restarts_before and victim.running:
                    break
                await asyncio.sleep(0.1)
            came_back = len(victim.starts) > restarts_before
            restarted = victim.starts[-1] - killed_at if came_back else float("nan")
            costs.append({"kill": label, "at": killed_at, "recovery": recovery, "restarted": restarted})
            log.warning("%s: restarted after %.1f s, both shards answering after %.1f s", label, restarted,
                        recovery)
        await asyncio.sleep(args.settle)
        stop_load.set()
        await asyncio.gather(*load)
        for shard in (0, 1):  # a last reindex analyses what a fault left pending; both shards still answer
            await ask(world, shard, admins[shard], "final /library reindex", "library reindex",
                      lambda ix: embed_title(ix) == "Reindex finished", full=False)
        final_probe = await until_answering(world, time.monotonic())
        dead = [p.name for p in everything if not p.running]
        if dead:
            problems.append(f"not running at the end: {dead}")
        problems += await final_checks(world, db_url, home / "checker")
        stop_supervisor.set()
        await supervisor
    finally:
        stop_supervisor.set()
        stop_load.set()
        for proc in reversed(everything):
            await asyncio.to_thread(proc.stop)
        await server.stop()
    return report(world, costs, steady, final_probe, problems, home)


def window_of(costs: list[dict[str, Any]], request: Request) -> str:
    label = "before any kill"
    for cost in costs:
        if request.sent_at >= cost["at"]:
            label = f"after killing {cost['kill']}"
    return label


def report(world: World, costs: list[dict[str, Any]], steady: float, final_probe: float,
           problems: list[str], home: Path) -> int:
    outcomes = Counter(r.outcome for r in world.requests)
    print(f"fault drill: {len(world.requests)} requests; {dict(outcomes)}")
    print(f"a probe (/similar of a clip, both shards) took {steady:.1f} s before any kill, "
          f"{final_probe:.1f} s at the end")
    print("kill                 process back   both shards answering   requests of its window")
    for cost in costs:
        label = f"after killing {cost['kill']}"
        counts = Counter(r.outcome for r in world.requests if window_of(costs, r) == label)
        print(f"{cost['kill']:20s} {cost['restarted']:8.1f} s   {cost['recovery']:12.1f} s            "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    told = [r for r in world.requests if r.outcome == "told"]
    for reason, n in Counter(r.detail.splitlines()[0][:110] if r.detail else "" for r in told).most_common(8):
        print(f"  told it failed ({n}): {reason}")
    lost = [r for r in world.requests if r.outcome in ("lost", "pending")]
    for r in lost[:10]:
        print(f"  LOST {r.kind} on shard {r.shard} ({window_of(costs, r)}): {r.detail}")
    print("final checks: " + ("nothing lost or doubled, every process running" if not problems
                              else "; ".join(problems)))
    logs = {name: "".join(p.read_text(errors="replace") for p in sorted(home.glob(f"{name}*.log")))
            for name in ("bot", "worker")}
    print(f"retried: {logs['bot'].count('submitting it again')} queued jobs submitted again by a bot after "
          f"Redis came back without them; {logs['worker'].count(': try 2')} jobs run again by a worker after "
          f"theirs died; {logs['bot'].count('previous process lost')} restarted bot told members of lost "
          f"requests")
    print(f"logs: {home}")
    failed = bool(lost or problems)
    print("result: " + ("PASS" if not failed else f"FAIL ({len(lost)} lost, {len(problems)} problems)"))
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=3, help="members per shard sending requests")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds of load between kills")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(drill(args))


if __name__ == "__main__":
    sys.exit(main())
