"""What users send to be analysed (a link or an attachment), judged before any download.

Links go through core's fast pre-check (scheme, credentials, literal private addresses; no DNS: the
authoritative check happens where core connects).

Discord tells us an attachment's size and name up front, so an oversized or non-audio upload is refused
without touching the CDN; the download then counts bytes as they arrive, so a size that lied cannot make
us hold more than the cap in memory.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
import discord

from bot.checks import enforce_cooldown
from bot.errors import Refusal
from bot.replies import defer
from core.audio import check_extension
from core.config import Settings
from core.errors import FetchFailed, TooLarge
from core.service import Service, Upload

if TYPE_CHECKING:
    from bot.app import CratediggerBot

MAX_LINK = 500
CHUNK = 64 * 1024
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_read=20)


def upload_cap(interaction: discord.Interaction, settings: Settings) -> int:
    """The smaller of our own limit and what Discord lets this member upload here."""
    return min(settings.max_upload_bytes, interaction.filesize_limit or settings.max_upload_bytes)


def _too_large(name: str, cap: int) -> TooLarge:
    return TooLarge(f"'{name}' is bigger than {cap / 2**20:.0f} MB; send a shorter or more compressed clip.")


def check_attachment(attachment: discord.Attachment, cap: int) -> None:
    """Refuse by metadata alone: extension first (the friendlier reason), then size."""
    check_extension(attachment.filename)
    if attachment.size > cap:
        raise _too_large(attachment.filename, cap)


async def download(session: aiohttp.ClientSession, attachment: discord.Attachment, cap: int) -> Upload:
    """The attachment's bytes, refusing as soon as more than `cap` arrive."""
    # Chunks are joined once at the end: growing one buffer copies every byte again on each resize, and
    # 50 uploads arriving together made those copies a visible stall of the event loop.
    chunks: list[bytes] = []
    received = 0
    try:
        async with session.get(attachment.url, timeout=DOWNLOAD_TIMEOUT) as response:
            if response.status != 200:
                raise FetchFailed(f"Discord would not give me '{attachment.filename}' "
                                  f"(HTTP {response.status}); try uploading it again.")
            async for chunk in response.content.iter_chunked(CHUNK):
                received += len(chunk)
                if received > cap:
                    raise _too_large(attachment.filename, cap)
                chunks.append(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise FetchFailed(f"I could not download '{attachment.filename}' from Discord "
                          f"({type(exc).__name__}); try again.") from None
    return Upload(attachment.filename, b"".join(chunks))


def check_source(service: Service, link: str | None, file: discord.Attachment | None, cap: int) -> None:
    """Exactly one of a link or a file, each refused now if it can be judged without downloading."""
    if (link is None) == (file is None):
        raise Refusal("Give me one thing: either a link or a file.")
    if link is not None:
        if len(link) > MAX_LINK:
            raise Refusal(f"That link is longer than {MAX_LINK} characters.")
        service.check_link(link.strip())
    else:
        check_attachment(file, cap)  # type: ignore[arg-type]


async def receive(bot: CratediggerBot, interaction: discord.Interaction, link: str | None,
                  file: discord.Attachment | None, *, ephemeral: bool = False) -> str | Upload:
    """What a heavy command (/genre, /similar, /library add) was given, in the order that wastes nothing:
    exactly one of a link or a file, refused now if it can be judged without downloading; then the
    member's cooldown (a refused input does not cost their turn); then the acknowledgement; then the
    attachment's bytes. Returns the link or the upload."""
    cap = upload_cap(interaction, bot.settings)
    check_source(bot.service, link, file, cap)
    enforce_cooldown(interaction)
    await defer(interaction, ephemeral=ephemeral)
    if link is not None:
        return link.strip()
    return await download(bot.downloads, file, cap)  # type: ignore[arg-type]
