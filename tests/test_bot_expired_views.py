"""Rating menus keep answering after a /similar pager expires (found by bench_soak: discord.py, removing the
expired view, unregistered the menu's dynamic item for every message; only a successful tidy-up edit
registered it again, so once a pager's message was gone, no rating menu answered). The pager's lifetime is
shortened and its message deleted meanwhile, as a member may; the test waits for the expiry's tidy-up.

Pagers are bounded by count as well as by time (CRATEDIGGER_PAGERS_MAX; bench_soak --probe-memory found the
pagers were what the bot held after its warm-up): past the limit the oldest is retired at once, as if it
had expired."""
from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from tests.bot_world import bot_with_library
from tests.conftest import wav_bytes

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


async def test_rating_menus_answer_after_a_pager_expired(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    async with bot_with_library(tmp_path, 3, pager_seconds=0.5) as (server, guild, bot):
        member = guild.add_member(server.add_user("rater"))
        recommended = await server.slash(member, "recommend", mood="calm")
        menu = await server.reply(recommended, timeout=120)  # a menu on a message of its own

        tidied: list[bool] = []
        edit = discord.Interaction.edit_original_response

        async def message_deleted_meanwhile(self: discord.Interaction, **fields: Any) -> Any:
            view = fields.get("view")
            if view is not None and not any(getattr(i, "custom_id", "").startswith("cd:similar")
                                            for i in view.children):  # the expiry's tidy-up
                tidied.append(True)
                raise discord.NotFound(SimpleNamespace(status=404, reason="Not Found"),
                                       {"code": 10008, "message": "Unknown Message"})
            return await edit(self, **fields)

        monkeypatch.setattr(discord.Interaction, "edit_original_response", message_deleted_meanwhile)
        asked = await server.slash(member, "similar", file=server.attachment(
            "probe.wav", wav_bytes(4, freq=330, seed=9)))
        pager = await server.reply(asked, timeout=120)
        assert "cd:similar:next" in pager.custom_ids() or "cd:similar:prev" in pager.custom_ids()
        for _ in range(600):  # until the pager has expired and tried to tidy up
            if tidied:
                break
            await asyncio.sleep(0.1)
        assert tidied

        for message in (menu,):  # another message's menu (the pager's own message is gone)
            value = message.component("cd:rate")["options"][0]["value"]
            picked = await server.select(member, message, "cd:rate", [value])
            noted = await server.reply(picked, timeout=60)
            assert "noted" in noted.content


async def test_past_the_pager_limit_the_oldest_pager_is_retired_and_its_menu_still_answers(
        tmp_path: Path) -> None:
    async with bot_with_library(tmp_path, 7, pagers_max=2) as (server, guild, bot):  # 7: two pages
        member = guild.add_member(server.add_user("pager"))
        pagers = []
        for i in range(3):
            asked = await server.slash(member, "similar", file=server.attachment(
                f"probe {i}.wav", wav_bytes(4, freq=300 + 40 * i, seed=20 + i)))
            pagers.append(await server.reply(asked, timeout=120))
            assert "cd:similar:next" in pagers[-1].custom_ids()

        oldest, *newest = pagers
        await server.wait_for(lambda: "cd:similar:next" not in oldest.custom_ids(), timeout=60)
        assert oldest.custom_ids() == ["cd:rate"]  # the buttons gone, the rating menu kept
        assert all("cd:similar:next" in m.custom_ids() for m in newest)
        assert len(bot.pagers) == 2

        value = oldest.component("cd:rate")["options"][0]["value"]
        noted = await server.reply(await server.select(member, oldest, "cd:rate", [value]), timeout=60)
        assert "noted" in noted.content
        turned = await server.click(member, newest[0], "cd:similar:next")
        await server.wait_for(lambda: turned.answered, timeout=60)
        assert "page 2/" in newest[0].embeds[0]["footer"]["text"]
