"""Property: whatever a crafted client gets Discord to relay, the real bot either answers with something the
member can see (a reply, an ephemeral refusal, autocomplete choices) or, where discord.py drops the payload
before any of our code runs (a click on a component no handler claims), says nothing; our error handler never
reports an "unexpected error", nothing logs an error, and afterwards a normal command gets its normal answer.

Crafted means: option values outside their choices, range or type; hostile unicode and control strings in
every string option (links, track names, moods, autocomplete input); attachments whose name, declared size,
content type and bytes lie; clicks with any custom_id (our dynamic items' prefixes followed by garbage
included), on messages that carry that component or not, with select values that were never offered.

One world (the local Discord server, the real bot, the real service on a temporary data folder) serves every
example. @given does not mix with async fixtures, so the world runs in its own event loop on a thread and
the synchronous test submits one coroutine per example to it.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from bot.app import CratediggerBot
from bot.views import GenreFeedback, RateTracks
from core.config import Settings
from core.mood import MOODS
from tests.conftest import wav_bytes
from tests.discord_server import (
    MANAGE_GUILD,
    FakeDiscord,
    Guild,
    InteractionRecord,
    Member,
    MessageRecord,
    connected,
    routed_to,
)
from tests.discord_server.interactions import ATTACHMENT, BOOLEAN, BUTTON, INTEGER, STRING, STRING_SELECT
from tests.http_fixture import LocalHTTPServer

pytestmark = pytest.mark.slow

T = TypeVar("T")
EXAMPLE_TIMEOUT = 30.0
"""Seconds an example may take to be answered (a rare valid clip is analysed in a few; garbage is refused at
once). Kept short because a failing example is replayed many times while hypothesis shrinks it."""
SETTLE_SECONDS = 0.15
"""How long a click that nothing claims is watched for a late error before the next example."""

OPTIONS: dict[str, dict[str, tuple[int, bool]]] = {
    "genre": {"file": (ATTACHMENT, False), "link": (STRING, False), "show_map": (BOOLEAN, False)},
    "similar": {"link": (STRING, False), "file": (ATTACHMENT, False), "show_map": (BOOLEAN, False)},
    "recommend": {"mood": (STRING, True), "count": (INTEGER, False)},
    "tag": {"track": (STRING, True), "mood": (STRING, True)},
    "history": {},
    "forget-me": {},
    "library add": {"link": (STRING, False), "file": (ATTACHMENT, False)},
    "library reindex": {"full": (BOOLEAN, False)},
    "library stats": {},
    "library map": {"file": (ATTACHMENT, False), "link": (STRING, False)},
    "sync": {"scope": (STRING, False)},
}
"""Every command the bot publishes: its options' (type, required). Checked against the synced schema below,
so a new option cannot go unfuzzed."""


VALID_WAV = wav_bytes(3, freq=523, seed=99)


# ------------------------------------------------------------------------------------------------ the cases
@dataclass(frozen=True)
class Upload:
    """An attachment as a crafted upload declares it: any name, size and type over any bytes."""

    filename: str
    data: bytes
    content_type: str
    size: int | None  # None: the real length


@dataclass(frozen=True)
class Command:
    """A slash command with raw option values (an `Upload` for an attachment), sent by a new member who
    holds the library-admin role when `admin`."""

    name: str
    options: dict[str, Any]
    admin: bool


@dataclass(frozen=True)
class Autocomplete:
    """Typing in /tag's `track` (the bot's one autocompleted option) with anything in the other options."""

    typed: Any
    mood: Any


@dataclass(frozen=True)
class Click:
    """A component interaction on a real /recommend reply; `crafted` puts a component with this custom_id
    and type on the message instead of the real ones (as an older or forged message would carry)."""

    custom_id: str
    component_type: int
    values: tuple[Any, ...] | None
    crafted: bool
    offered: tuple[tuple[str, str], ...]  # (label, value) options of a crafted select


def _often(common: st.SearchStrategy[T], rare: st.SearchStrategy[T], one_in: int) -> st.SearchStrategy[T]:
    """`rare` about once in `one_in` draws (valid audio is analysed, which is slow; values of the wrong type
    are refused before the command runs, so they would hide the deeper code paths if they were common)."""
    return st.integers(0, one_in - 1).flatmap(lambda i: rare if i == 0 else common)


NASTY = ["@everyone", "@here", "<@&123456789012345678>", "[x](https://evil.example)", "\u202eevil", "\x00",
         "\n\n", "x'); DROP TABLE tracks; --", "%", "_", "\\", "💥" * 50, "a" * 3000, " ", ""]
TEXT = st.one_of(st.text(max_size=80), st.sampled_from(NASTY),
                 st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=10)), max_size=5).map("".join))
WRONG_TYPE = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.booleans(), st.none(),
                       st.floats(allow_nan=False, allow_infinity=False))
ANY_VALUE = st.one_of(TEXT, WRONG_TYPE)
MOOD = _often(st.sampled_from(MOODS), st.one_of(st.sampled_from(["CALM", " happy ", "chill", "Calm\n"]),
                                                 ANY_VALUE), one_in=3)
DIGITS = st.one_of(st.integers(min_value=0, max_value=5).map(str),  # the library's own ids are among these
                   st.integers(min_value=-(2**70), max_value=2**70).map(str),
                   st.sampled_from(["²", "٣", "１２", "0", "00", "-1", " 7 ", "9" * 40, "1e3", "0x10"]))
SONGS = "songs://"
"""Stands for the local song server (its port is known only once the world runs): a link the link guard
allows, to a missing file, to HTML served as .mp3, or to a playlist (an RSS feed of a real clip and an
entry at a private address)."""
LINK = st.one_of(TEXT, st.sampled_from([
    "http://127.0.0.1:8000/song.mp3", "http://169.254.169.254/latest/meta-data", "file:///etc/passwd",
    "http://2130706433/x.mp3", "https://user:pw@example.com/a.mp3", "ftp://example.com/a.mp3",
    "https://" + "a" * 600 + ".com/x.mp3", "http://[::1]/x.mp3", "javascript:alert(1)", "https://",
    SONGS + "missing.mp3", SONGS + "not-audio.mp3", SONGS + "feed.xml",
]), st.builds(lambda scheme, rest: f"{scheme}://{rest}", st.sampled_from(["http", "https", "HTTP", "gopher"]),
              st.text(max_size=40)))
AUDIO_EXTENSIONS = [".wav", ".mp3", ".ogg", ".flac", ".m4a", ".opus", ".webm", ".aiff"]


def _wav_header_then(noise: bytes) -> bytes:
    return VALID_WAV[:44] + noise


UPLOAD = st.builds(
    Upload,
    filename=st.one_of(
        st.text(max_size=60),
        st.builds(str.__add__, st.text(max_size=30), st.sampled_from(AUDIO_EXTENSIONS)),
        st.sampled_from(["song.wav", ".wav", "noext", "evil.wav.exe", "../../etc/passwd.wav", "@everyone.mp3",
                         "a" * 300 + ".wav", "cat.png", "a/b\\c.mp3", "%00.ogg", "🎵.flac"]),
    ),
    data=_often(st.one_of(st.binary(max_size=2048), st.just(b""),
                          st.binary(max_size=512).map(_wav_header_then), st.just(b"ID3\x04" + b"\x00" * 100),
                          st.just(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)),
                st.just(VALID_WAV), one_in=25),
    content_type=st.one_of(st.sampled_from(["audio/wav", "audio/mpeg", "image/png", "", "text/html"]),
                           st.text(max_size=40)),
    size=st.one_of(st.none(), st.integers(min_value=0, max_value=2**53)),
)


def _option_values(name: str) -> st.SearchStrategy[Any]:
    """What a crafted client puts in each option: mostly hostile values of the option's type, sometimes
    anything at all."""
    specific = {
        "mood": MOOD, "count": _often(st.integers(1, 10), st.integers(-(2**64), 2**64), one_in=3),
        "track": st.one_of(DIGITS, TEXT), "link": LINK, "file": UPLOAD, "full": st.booleans(),
        "show_map": st.booleans(),
        "scope": st.one_of(st.sampled_from(["here", "global"]), TEXT),
    }[name]
    return specific if name == "file" else _often(specific, ANY_VALUE, one_in=5)


def _command(name: str) -> st.SearchStrategy[Command]:
    """Required options are usually there (their absence is refused before the command runs)."""
    values = {o: _option_values(o) for o in OPTIONS[name]}
    required = {o for o, (_, needed) in OPTIONS[name].items() if needed}
    options = _often(st.fixed_dictionaries({o: v for o, v in values.items() if o in required},
                                           optional={o: v for o, v in values.items() if o not in required}),
                     st.fixed_dictionaries({}, optional=values), one_in=6)
    return st.builds(Command, st.just(name), options, admin=st.booleans())


DYNAMIC_PREFIXES = ["cd:rate", "cd:genre:up:", "cd:genre:down:", "cd:genre:", "cd:similar:", "cd:forget:",
                    "cd:"]
CUSTOM_ID = st.one_of(
    st.sampled_from(["cd:rate", "cd:genre:up:rock", "cd:genre:down:jazz", "cd:similar:next",
                     "cd:forget:yes"]),
    st.builds(str.__add__, st.sampled_from(DYNAMIC_PREFIXES), st.text(max_size=40)),
    st.builds(str.__add__, st.sampled_from(["cd:genre:up:", "cd:genre:down:"]),
              st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=60)),
    st.text(min_size=1, max_size=100),
)
RATING = st.builds(str.__add__, st.sampled_from(["up:", "down:", "", "sideways:"]), st.one_of(DIGITS, TEXT))
OFFERED_OPTIONS = st.lists(st.tuples(st.text(min_size=1, max_size=100),
                                     _often(RATING, st.text(min_size=1, max_size=100), 3)
                                     .filter(lambda v: 1 <= len(v) <= 100)),
                           min_size=1, max_size=25, unique_by=lambda o: o[1]).map(tuple)


@st.composite
def clicks(draw: st.DrawFn) -> Click:
    """Values are drawn from the crafted menu's options as often as not, so valid-looking ratings of
    missing or absurd track ids get through to the rating code too."""
    offered = draw(OFFERED_OPTIONS)
    value = st.one_of(RATING, WRONG_TYPE, st.sampled_from([v for _, v in offered] + ["up:1", "down:2"]))
    values = draw(st.one_of(st.none(), st.lists(value, max_size=3).map(tuple)))
    return Click(draw(CUSTOM_ID), draw(st.sampled_from([BUTTON, STRING_SELECT])), values, draw(st.booleans()),
                 offered)


CASES = st.one_of(*[_command(name) for name in OPTIONS],
                  st.builds(Autocomplete, typed=_often(st.one_of(TEXT, DIGITS), WRONG_TYPE, one_in=5),
                            mood=ANY_VALUE),
                  clicks())


# ------------------------------------------------------------------------------------------------ the world
class ErrorLog(logging.Handler):
    """Every record at ERROR or above, from any logger and thread: our handler's "unexpected error",
    discord.py's "Ignoring exception in …", asyncio's unretrieved task exceptions."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, start: int = 0) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" + (f" [{r.exc_info[0].__name__}: {r.exc_info[1]}]"
                                                 if r.exc_info and r.exc_info[1] else "")
                for r in self.records[start:]]


@dataclass
class Outcome:
    """What the member saw, copied out of the server's records on the world's own loop."""

    callbacks: list[int]
    texts: list[str]
    refused: list[str]
    answered: bool
    public_plain: list[str]
    """Visible to everyone yet without an embed: only an error can look like that (answers are embeds)."""

    @classmethod
    def of(cls, ix: InteractionRecord) -> Outcome:
        return cls([cb.type for cb in ix.callbacks], [m.text() for m in ix.messages], list(ix.refused),
                   ix.answered, [m.text() for m in ix.messages if not m.ephemeral and not m.embeds])


@dataclass
class World:
    server: FakeDiscord
    bot: CratediggerBot
    guild: Guild
    songs: LocalHTTPServer
    carrier: MessageRecord
    """A real /recommend reply (with its rating menu): the message the fuzzed clicks are made on."""
    loop: asyncio.AbstractEventLoop
    errors: ErrorLog
    _names: Iterator[int] = field(default_factory=itertools.count)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """One line where hypothesis prints the fixture beside each failing example."""
        printer.text(f"World(guild={self.guild.id})")

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = EXAMPLE_TIMEOUT + 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def member(self, *, admin: bool = False) -> Member:
        """A new member each time: their own cooldown and history, so neither masks a code path."""
        user = self.server.add_user(f"fuzz{next(self._names)}")
        return self.guild.add_member(user, [r for r in self.guild.roles if r.name == "Mods"] if admin else [])


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


async def _cancel_leftovers() -> None:
    """Views still waiting for their timeout (pagers, /forget-me prompts) end with the world."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _open(tmp: Path, stack: contextlib.AsyncExitStack, loop: asyncio.AbstractEventLoop,
                errors: ErrorLog) -> World:
    server = FakeDiscord(ack_deadline=None)  # no race with the machine's load; bad forms are still refused
    await server.start()
    stack.push_async_callback(server.stop)
    guild = server.add_guild("Fuzz")
    guild.add_role("Mods", MANAGE_GUILD)
    songs = LocalHTTPServer().start()
    stack.callback(songs.stop)
    songs.add_file("not-audio.mp3", b"<html>surprise</html>", "audio/mpeg")
    songs.add_feed("feed.xml", [("Clip", songs.add_file("clip.wav", VALID_WAV, "audio/wav")),
                                ("Inside", "http://10.0.0.1/x.wav")])
    settings = Settings(data_dir=tmp / "data", discord_token=server.token, admin_role="DJ", workers=2,
                        user_cooldown_seconds=30.0, max_upload_mb=1.0, fetch_allow_hosts=(songs.netloc,))
    bot = CratediggerBot(settings, guild_ready_timeout=0.05)
    stack.enter_context(routed_to(server))
    await stack.enter_async_context(connected(bot, server))
    await bot.sync_commands()
    library = tmp / "library"
    library.mkdir()
    for i, (title, freq) in enumerate([("Low Drone", 110), ("Middle A", 440), ("High Bell", 880)]):
        (library / f"{title}.wav").write_bytes(wav_bytes(4, freq=freq, seed=i))
    assert len((await bot.service.add_to_library(guild.id, [library])).added) == 3
    world = World(server, bot, guild, songs, carrier=None, loop=loop, errors=errors)  # type: ignore[arg-type]
    ix = await server.slash(world.member(), "recommend", mood="calm", count=3)
    world.carrier = await server.reply(ix)
    assert world.carrier.component("cd:rate")["options"]
    return world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=_run_loop, args=(loop,), name="fuzz-world", daemon=True)
    thread.start()
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    stack = contextlib.AsyncExitStack()
    try:
        yield asyncio.run_coroutine_threadsafe(
            _open(tmp_path_factory.mktemp("fuzz-interactions"), stack, loop, errors), loop).result(120)
    finally:
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(60)
        asyncio.run_coroutine_threadsafe(_cancel_leftovers(), loop).result(10)
        logging.getLogger().removeHandler(errors)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# ------------------------------------------------------------------------------------------ sending a case
def _command_options(world: World, case: Command) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    options, resolved = [], {}
    for name, value in case.options.items():
        kind, _ = OPTIONS[case.name][name]
        if kind == ATTACHMENT:
            attachment = world.server.attachment(value.filename, value.data, content_type=value.content_type,
                                                 size=value.size)
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
            value = attachment["id"]
        elif isinstance(value, str) and value.startswith(SONGS):
            value = world.songs.url(value.removeprefix(SONGS))
        options.append({"type": kind, "name": name, "value": value})
    return options, resolved


def _carried(click: Click) -> list[dict[str, Any]] | None:
    """The components the clicked message carries in the payload (None: the carrier's real ones)."""
    if not click.crafted:
        return None
    component: dict[str, Any] = {"type": click.component_type, "custom_id": click.custom_id}
    if click.component_type == BUTTON:
        component.update(style=1, label="x")
    else:
        component["options"] = [{"label": label, "value": value} for label, value in click.offered]
    return [{"type": 1, "components": [component]}]


def claimed(world: World, click: Click) -> bool:
    """Whether discord.py hands the click to our code: a dynamic item's template matches the custom_id and
    the message carries a component of that type and custom_id (otherwise discord.py drops it)."""
    rows = _carried(click) if click.crafted else world.carrier.components
    carried = {(c.get("type"), c.get("custom_id")) for row in rows or [] for c in row.get("components", [])}
    matches = any(item.__discord_ui_compiled_template__.fullmatch(click.custom_id)
                  for item in (RateTracks, GenreFeedback))
    return matches and (click.component_type, click.custom_id) in carried


async def _send(world: World, case: Command | Autocomplete | Click) -> Outcome:
    server = world.server
    if isinstance(case, Command):
        options, resolved = _command_options(world, case)
        ix = await server.raw_command(world.member(admin=case.admin), case.name, options, resolved=resolved)
    elif isinstance(case, Autocomplete):
        options = [{"type": STRING, "name": "track", "value": case.typed, "focused": True},
                   {"type": STRING, "name": "mood", "value": case.mood}]
        ix = await server.raw_command(world.member(), "tag", options, autocomplete=True)
    else:
        data: dict[str, Any] = {"custom_id": case.custom_id, "component_type": case.component_type}
        if case.values is not None:
            data["values"] = list(case.values)
        ix = await server.raw_component(world.member(), world.carrier, data, components=_carried(case))
    if isinstance(case, Click) and not claimed(world, case):
        await asyncio.sleep(SETTLE_SECONDS)
    else:
        with contextlib.suppress(TimeoutError):
            await server.wait_for(lambda: ix.answered or bool(ix.refused), timeout=EXAMPLE_TIMEOUT)
    return Outcome.of(ix)


# ------------------------------------------------------------------------------------------------ the tests
OFFERED = (("👍 x", "up:1"),)


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(case=CASES)
@example(Command("tag", {"track": "²", "mood": "calm"}, admin=False))  # a digit int() does not read
@example(Command("tag", {"track": "9" * 40, "mood": "calm"}, admin=False))  # beyond SQLite's integers
@example(Command("tag", {"track": None, "mood": "calm"}, admin=False))
@example(Command("recommend", {"mood": "calm", "count": ""}, admin=False))
@example(Command("recommend", {"mood": "bored", "count": 10**30}, admin=False))
@example(Command("similar", {"link": False}, admin=False))
@example(Command("library add", {"link": 7}, admin=True))
@example(Command("library add", {"link": SONGS + "feed.xml"}, admin=True))  # one entry added, one refused
@example(Command("genre", {"link": SONGS + "feed.xml"}, admin=False))  # a playlist, where one track is due
@example(Command("genre", {"link": SONGS + "missing.mp3",
                           "file": Upload("a.wav", VALID_WAV, "audio/wav", None)}, admin=False))
@example(Autocomplete(typed=None, mood="calm"))
@example(Click("cd:rate", STRING_SELECT, values=None, crafted=False, offered=OFFERED))
@example(Click("cd:rate", STRING_SELECT, values=("up:99999999999999999999",), crafted=True,
               offered=(("👍 x", "up:99999999999999999999"),)))
@example(Click("cd:rate", BUTTON, values=None, crafted=True, offered=OFFERED))
@example(Click("cd:genre:down:" + "z" * 80, BUTTON, values=None, crafted=True, offered=OFFERED))
def test_crafted_interactions_get_a_visible_answer_or_none_never_an_unexpected_error(world: World, case):
    logged = len(world.errors.records)
    outcome = world.call(_send(world, case))
    event(f"{case.name if isinstance(case, Command) else type(case).__name__}: callbacks {outcome.callbacks}")
    assert world.errors.lines(logged) == [], case
    assert not outcome.refused, (case, outcome)  # Discord refused nothing the bot sent (a bad form...)
    assert not any("error id" in text for text in outcome.texts), (case, outcome)
    assert outcome.public_plain == [], (case, outcome)  # refusals are private
    if isinstance(case, Autocomplete):
        assert outcome.callbacks == [8], (case, outcome)
    elif isinstance(case, Command) or claimed(world, case):
        assert outcome.answered and outcome.texts, (case, outcome)
        assert outcome.callbacks[0] in (4, 5), (case, outcome)


def test_the_bot_still_answers_normally_after_the_fuzz(world: World):
    schema = {}
    for command in world.server.global_commands:
        leaves = [o for o in command["options"] if o["type"] == 1] or [command]
        for leaf in leaves:
            name = command["name"] if leaf is command else f"{command['name']} {leaf['name']}"
            schema[name] = {o["name"]: (o["type"], o.get("required", False)) for o in leaf.get("options", [])}
    assert schema == OPTIONS  # every published option is fuzzed

    async def normal() -> tuple[InteractionRecord, MessageRecord, InteractionRecord]:
        ix = await world.server.slash(world.member(), "recommend", mood="happy", count=2)
        message = await world.server.reply(ix)
        typed = await world.server.autocomplete(world.member(), "tag", "track", track="bell", mood="calm")
        await world.server.wait_for(lambda: typed.answered)
        return ix, message, typed

    ix, message, typed = world.call(normal())
    assert [cb.type for cb in ix.callbacks] == [5] and not message.ephemeral
    assert message.embeds[0]["title"] == "Picked for a happy mood"
    assert [c["name"] for c in typed.choices] == ["High Bell"]
    assert not world.bot.is_closed()
    assert world.errors.lines() == []
