"""Responsiveness of the bot under a burst: N members send /genre with a 30-s clip at the same moment.

Runs the real bot (discord.py client, real service and worker pool on a temporary data folder) against the
local Discord server in tests/discord_server, which enforces Discord's 3-s acknowledgement deadline.
Measures, per interaction, the time to the first acknowledgement (the deferral) and to the final answer,
and, throughout, the event loop's lag (how late a 10-ms timer fires: heartbeats and every other command
wait that long). The local server runs in the same loop, so its work counts against the bot: the figure
is pessimistic.

Targets (exit 1 on a miss): every acknowledgement < 1 s, max loop lag < 100 ms, no interaction lost
(each ends with a visible answer and none of the bot's requests is refused).

    .venv/bin/python benchmarks/bench_bot.py [--interactions 50] [--clip-seconds 30] [--queue-size 64]
"""
from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bot.app import CratediggerBot  # noqa: E402
from bot.launcher import sync  # noqa: E402
from core.config import load_settings  # noqa: E402
from tests.conftest import synth_tone  # noqa: E402
from tests.discord_server import FakeDiscord, connected, routed_to  # noqa: E402

log = logging.getLogger("bench_bot")

ACK_TARGET_S = 1.0
LAG_TARGET_S = 0.100
LAG_TICK_S = 0.010


def clip(seconds: float, seed: int) -> bytes:
    out = io.BytesIO()
    sf.write(out, synth_tone(seconds, freq=110 * 2 ** (seed % 24 / 12), seed=seed), 22_050, format="WAV",
             subtype="PCM_16")
    return out.getvalue()


async def watch_lag(samples: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + LAG_TICK_S
        await asyncio.sleep(LAG_TICK_S)
        samples.append(max(0.0, loop.time() - due))


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def run(args: argparse.Namespace) -> int:
    server = FakeDiscord()
    await server.start()
    guild = server.add_guild("Bench")
    members = [guild.add_member(server.add_user(f"listener{i}")) for i in range(args.interactions)]
    clips = [clip(args.clip_seconds, i) for i in range(args.interactions)]
    with tempfile.TemporaryDirectory(prefix="bench-bot-") as tmp:
        settings = load_settings(env_file=None).with_overrides(
            data_dir=Path(tmp), discord_token=server.token, dev_guild_id=None, queue_size=args.queue_size,
            workers=args.workers)
        bot = CratediggerBot(settings, guild_ready_timeout=0.05)
        with routed_to(server):
            async with connected(bot, server):
                await sync(settings)
                lags: list[float] = []
                stop = asyncio.Event()
                watcher = asyncio.create_task(watch_lag(lags, stop))
                started = time.perf_counter()
                interactions = await asyncio.gather(*(
                    server.slash(m, "genre", file=server.attachment(f"clip{i}.wav", clips[i]))
                    for i, m in enumerate(members)))
                try:
                    await server.wait_for(lambda: all(ix.messages or ix.refused for ix in interactions),
                                          timeout=args.timeout)
                except TimeoutError:
                    log.error("timed out waiting for answers")
                wall = time.perf_counter() - started
                stop.set()
                await watcher
    await server.stop()

    acks = [ix.ack_seconds for ix in interactions if ix.ack_seconds is not None]
    answers = [ix.answer_seconds for ix in interactions if ix.answer_seconds is not None]
    lost = [ix for ix in interactions if not ix.messages or ix.refused]
    texts = [ix.last().text() for ix in interactions if ix.messages]
    charts = sum(1 for ix in interactions
                 if ix.messages and any(f.filename == "genre.png" for f in ix.last().files))
    busy = sum("busy" in t.lower() for t in texts)
    print(f"{args.interactions} concurrent /genre on {args.clip_seconds:g}-s clips, "
          f"workers={settings.workers}, queue_size={settings.queue_size}, wall {wall:.1f} s")
    print(f"acknowledgement  p50 {pct(acks, 50) * 1000:7.1f} ms  p95 {pct(acks, 95) * 1000:7.1f} ms  "
          f"max {max(acks, default=float('nan')) * 1000:7.1f} ms   "
          f"(target: every one < {ACK_TARGET_S * 1000:.0f} ms)")
    print(f"final answer     p50 {pct(answers, 50):7.2f} s   p95 {pct(answers, 95):7.2f} s   "
          f"max {max(answers, default=float('nan')):7.2f} s")
    print(f"event-loop lag   p50 {pct(lags, 50) * 1000:7.1f} ms  p99 {pct(lags, 99) * 1000:7.1f} ms  "
          f"max {max(lags, default=0.0) * 1000:7.1f} ms   (target: max < {LAG_TARGET_S * 1000:.0f} ms)")
    print(f"answers: {len(interactions) - len(lost)}/{len(interactions)} (with chart {charts}, busy {busy}); "
          f"lost {len(lost)}")
    if texts and not charts:
        print(f"note: no chart was sent; a sample answer: {texts[0][:160]!r}")
    for ix in lost[:5]:
        print(f"  lost {ix.id}: callbacks {[cb.type for cb in ix.callbacks]}, refused {ix.refused}")
    missed = []
    if len(acks) < len(interactions) or max(acks) >= ACK_TARGET_S:
        missed.append("acknowledgement")
    if max(lags, default=0.0) >= LAG_TARGET_S:
        missed.append("loop lag")
    if lost:
        missed.append("lost interactions")
    print("targets: " + ("all met" if not missed else "MISSED " + ", ".join(missed)))
    return 1 if missed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=50)
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queue-size", type=int, default=64,
                        help="the service's queue bound; below --interactions some answers are 'busy'")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
