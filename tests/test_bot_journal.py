"""A deferred request is written down before Discord hears it acknowledged (bot.replies.defer): the fault
drill lost a /recommend whose bot was killed between its acknowledgement and the journal's write, so the
process that took over had nothing to tell the member. The real bot and its store; the journal's write is
watched, not replaced, and the test reads what the local Discord had recorded at that moment."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.bot_world import bot_with_library

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


async def test_a_request_is_journalled_before_it_is_acknowledged(tmp_path: Path) -> None:
    async with bot_with_library(tmp_path, 0) as (server, guild, bot):
        store = bot.journal.store
        write = store.remember_pending
        acknowledged_when_written: list[bool] = []

        async def watched(**row: Any) -> Any:
            acknowledged_when_written.append(bool(server.interactions[row["interaction_id"]].callbacks))
            return await write(**row)

        store.remember_pending = watched  # type: ignore[method-assign]
        member = guild.add_member(server.add_user("listener"))
        ix = await server.slash(member, "recommend", mood="calm")
        await server.reply(ix, timeout=120)
        assert ix.callbacks and acknowledged_when_written == [False]
