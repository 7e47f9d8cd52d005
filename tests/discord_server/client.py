"""Point the real discord.py client at a FakeDiscord and run a client in the current event loop."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import discord
import yarl

from tests.discord_server.server import FakeDiscord


@contextlib.contextmanager
def routed_to(server: FakeDiscord) -> Iterator[None]:
    with routed_to_urls(server.api_base, server.gateway_url):
        yield


@contextlib.contextmanager
def routed_to_urls(api_base: str, gateway_url: str) -> Iterator[None]:
    """REST, webhooks and interaction callbacks all go through `Route.BASE`; a client that is not sharded
    or knows its shard count connects straight to `DEFAULT_GATEWAY` (an AutoShardedClient without a count
    asks `GET /gateway/bot`). Both are restored afterwards."""
    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


@contextlib.asynccontextmanager
async def connected(client: discord.Client, server: FakeDiscord, *,
                    timeout: float = 60.0) -> AsyncIterator[discord.Client]:
    """Log in (runs `setup_hook`), connect the gateway, wait for `on_ready`; close on exit.

    The caller keeps `routed_to(server)` active for as long as the client runs."""
    await client.login(server.token)
    task = asyncio.create_task(client.connect(reconnect=False), name="discord-client")
    try:
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait({ready, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            task.result()  # raises why the connection ended
            raise RuntimeError("the client stopped before it was ready")
        if ready not in done:
            ready.cancel()
            raise TimeoutError("the client did not become ready")
        yield client
    finally:
        await client.close()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
