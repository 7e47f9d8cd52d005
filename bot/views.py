"""Buttons and menus. Ratings are `DynamicItem`s whose custom_id (or option values) carry what was rated,
so they keep working after a restart; pagers and confirmations are short-lived views tied to one user."""
from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import Any

import discord

from bot import errors
from bot.render import similar_embed
from bot.text import choice_name, safe
from core.store import parse_id

log = logging.getLogger(__name__)


class SafeView(discord.ui.View):
    """A view whose callback errors go through the bot's one error handler."""

    async def on_error(self, interaction: discord.Interaction, error: Exception, item: Any, /) -> None:
        await errors.report(interaction, error)


class OwnedView(SafeView):
    """Only the member who ran the command may use it (others are told so, privately)."""

    def __init__(self, owner_id: int, *, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.owner_id = owner_id

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if interaction.user.id != self.owner_id:
            raise errors.Refusal("Those buttons belong to whoever ran the command; run it yourself.")
        return True


def rating_options(hits: Sequence[Any]) -> list[discord.SelectOption]:
    options = []
    for hit in hits[:12]:
        title = choice_name(hit.title)[:90]
        options.append(discord.SelectOption(label=f"👍 {title}", value=f"up:{hit.track_id}"))
        options.append(discord.SelectOption(label=f"👎 {title}", value=f"down:{hit.track_id}"))
    return options


class RateTracks(discord.ui.DynamicItem[discord.ui.Select], template=r"cd:rate"):
    """'Rate a track…': each option is 👍/👎 on one track; the choice is stored as that user's feedback
    and changes their next /recommend."""

    def __init__(self, hits: Sequence[Any] = (), *,
                 options: list[discord.SelectOption] | None = None) -> None:
        super().__init__(discord.ui.Select(custom_id="cd:rate", placeholder="Rate a track…",
                                           options=options if options is not None else rating_options(hits)))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Select,
                             match: re.Match[str], /) -> RateTracks:
        # A message can carry "cd:rate" on something that is not a menu (forged, or not ours): no options,
        # so the callback refuses it like any value that is not on the menu.
        return cls(options=list(getattr(item, "options", [])))

    def _picked(self) -> tuple[bool, int, str]:
        """(thumbs up?, track id, title) of the chosen option; a Refusal for a value that is not on the
        menu or not one we write ("up:ID" / "down:ID"), which a modified client can send."""
        chosen = self.item.values[0] if self.item.values else None
        option = next((o for o in self.item.options if o.value == chosen), None)
        verdict, _, raw_id = option.value.partition(":") if option is not None else ("", "", "")
        picked = parse_id(raw_id) if verdict in ("up", "down") else None
        if option is None or picked is None:
            raise errors.Refusal("That rating is not on the menu; pick a track from the menu to rate it.")
        return verdict == "up", picked, option.label[2:]

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            up, rated, label = self._picked()
            await interaction.response.defer(ephemeral=True, thinking=True)
            await interaction.client.service.feedback(  # type: ignore[attr-defined]
                interaction.guild_id, interaction.user.id, rated, up)
            await interaction.followup.send(
                f"{'👍' if up else '👎'} noted for **{safe(label, 90)}**: your next /recommend takes it into "
                "account.", ephemeral=True)
        except Exception as exc:  # noqa: BLE001 - dynamic items have no view-level handler; use ours
            await errors.report(interaction, exc)


class RatingView(SafeView):
    """Just the rating menu (for /recommend)."""

    def __init__(self, hits: Sequence[Any]) -> None:
        super().__init__(timeout=None)
        if hits:
            self.add_item(RateTracks(hits))


class GenreFeedback(discord.ui.DynamicItem[discord.ui.Button],
                    template=r"cd:genre:(?P<up>up|down):(?P<genre>[a-z]+)"):
    """👍/👎 under a /genre verdict: was the genre right?"""

    def __init__(self, genre: str, up: bool) -> None:
        super().__init__(discord.ui.Button(
            label="Right" if up else "Wrong", emoji="👍" if up else "👎",
            style=discord.ButtonStyle.success if up else discord.ButtonStyle.secondary,
            custom_id=f"cd:genre:{'up' if up else 'down'}:{genre}"))
        self.genre, self.up = genre, up

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str], /) -> GenreFeedback:
        return cls(match["genre"], match["up"] == "up")

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await interaction.client.service.genre_feedback(  # type: ignore[attr-defined]
                interaction.guild_id, interaction.user.id, self.genre, self.up)
            await interaction.followup.send(
                "Thanks! " + ("Glad it was right." if self.up
                              else "Noted that it was wrong: this helps us judge the model."), ephemeral=True)
        except Exception as exc:  # noqa: BLE001 - dynamic items have no view-level handler; use ours
            await errors.report(interaction, exc)


class GenreView(SafeView):
    def __init__(self, genre: str) -> None:
        super().__init__(timeout=None)
        self.add_item(GenreFeedback(genre, True))
        self.add_item(GenreFeedback(genre, False))


class SimilarPager(OwnedView):
    """◀ ▶ through up to 20 results, five at a time, with a rating menu for the tracks on the page. It works
    for `timeout` seconds, or until `Pagers` retires it early to make room for newer ones."""

    PER_PAGE = 5

    def __init__(self, report: Any, owner_id: int, interaction: discord.Interaction, *,
                 timeout: float) -> None:
        super().__init__(owner_id, timeout=timeout)
        self.report = report
        self.page = 0
        self.pages = max(1, -(-len(report.results) // self.PER_PAGE))
        self.interaction = interaction
        self.rate: RateTracks | None = None
        self._sync()

    def embed(self) -> discord.Embed:
        return similar_embed(self.report, page=self.page, per_page=self.PER_PAGE)

    def _sync(self) -> None:
        self.previous.disabled = self.page == 0
        self.next.disabled = self.page >= self.pages - 1
        if self.rate is not None:
            self.remove_item(self.rate)
        shown = self.report.results[self.page * self.PER_PAGE:(self.page + 1) * self.PER_PAGE]
        self.rate = RateTracks(shown) if shown else None
        if self.rate is not None:
            self.add_item(self.rate)

    async def _turn(self, interaction: discord.Interaction, step: int) -> None:
        self.page = min(self.pages - 1, max(0, self.page + step))
        self._sync()
        await interaction.response.edit_message(embed=self.embed(), view=self)

    @discord.ui.button(emoji="◀", style=discord.ButtonStyle.secondary, custom_id="cd:similar:prev", row=0)
    async def previous(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._turn(interaction, -1)

    @discord.ui.button(emoji="▶", style=discord.ButtonStyle.secondary, custom_id="cd:similar:next", row=0)
    async def next(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._turn(interaction, +1)

    async def on_timeout(self) -> None:
        await self.retire()

    async def retire(self) -> None:
        """Stop, leave the rating menu (it works forever) and drop the pager buttons, which would stop
        working; forget the results and the interaction.

        discord.py, removing a stopped view, also unregisters the dynamic items it held, for every message:
        without registering RateTracks again, no rating menu anywhere would answer once the first pager
        expired (bench_soak found every menu ignored from the 10th minute on)."""
        self.stop()
        client = self.interaction.client
        client.add_dynamic_items(RateTracks)
        pagers = getattr(client, "pagers", None)
        if pagers is not None:
            pagers.discard(self)
        keep = SafeView(timeout=None)
        if self.rate is not None:
            keep.add_item(RateTracks(options=list(self.rate.item.options)))
        try:
            await self.interaction.edit_original_response(view=keep)
        except discord.HTTPException as exc:
            log.debug("could not tidy up a /similar pager: %s", exc)


class Pagers:
    """The live /similar pagers, oldest first, at most `limit` (CRATEDIGGER_PAGERS_MAX): each holds its
    results and its interaction until it times out, so without a count bound a burst of /similar would
    grow the bot's memory for the pagers' whole lifetime. Keeping one more than the limit retires the
    oldest at once."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._live: dict[SimilarPager, None] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._live)

    def keep(self, pager: SimilarPager) -> None:
        """Track `pager` (already sent and listening); retire the oldest ones past the limit."""
        if pager.is_finished():
            return
        self._live[pager] = None
        while len(self._live) > self.limit:
            oldest = next(iter(self._live))
            del self._live[oldest]
            task = asyncio.create_task(oldest.retire())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    def discard(self, pager: SimilarPager) -> None:
        self._live.pop(pager, None)


class ConfirmForget(OwnedView):
    """Nothing is deleted until the member presses the red button."""

    def __init__(self, owner_id: int, interaction: discord.Interaction) -> None:
        super().__init__(owner_id, timeout=120)
        self.interaction = interaction

    @discord.ui.button(label="Delete my data", style=discord.ButtonStyle.danger, custom_id="cd:forget:yes")
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.stop()
        await interaction.response.defer()
        removed = await interaction.client.service.forget_user(  # type: ignore[attr-defined]
            interaction.guild_id, interaction.user.id)
        await interaction.edit_original_response(
            content=f"Done: I deleted your tags, history and ratings on this server ({removed} records).",
            view=None)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary, custom_id="cd:forget:no")
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.stop()
        await interaction.response.edit_message(content="Cancelled: nothing was deleted.", view=None)

    async def on_timeout(self) -> None:
        try:
            await self.interaction.edit_original_response(content="Timed out: nothing was deleted.",
                                                          view=None)
        except discord.HTTPException as exc:
            log.debug("could not close a /forget-me prompt: %s", exc)
