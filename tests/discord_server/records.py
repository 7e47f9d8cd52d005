"""What the fake Discord saw the bot do, decoded, so tests assert on it as a user would see it."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

EPHEMERAL = 1 << 6
LOADING = 1 << 7


@dataclass
class FileRecord:
    """One uploaded file (a `files[n]` part) with its bytes."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class Callback:
    """One POST /interactions/{id}/{token}/callback."""

    type: int
    data: dict[str, Any]
    files: list[FileRecord]
    at: float


@dataclass
class MessageRecord:
    """A message as it now stands; `history` keeps each version's payload, oldest first."""

    id: int
    channel_id: int
    interaction_id: int | None
    """The interaction it answers; None for a message the bot posted in a channel with its own token."""
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    files: list[FileRecord] = field(default_factory=list)
    attachment_ids: list[int] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None
    deleted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """A deferred 'is thinking…' placeholder not yet filled by a follow-up or an edit."""
        return bool(self.flags & LOADING)

    def text(self) -> str:
        """Content plus every embed's visible text, for assertions that do not care where text sits."""
        parts = [self.content or ""]
        for embed in self.embeds:
            parts += [embed.get("title", ""), embed.get("description", "")]
            parts += [f"{f.get('name', '')} {f.get('value', '')}" for f in embed.get("fields", [])]
            parts.append((embed.get("footer") or {}).get("text", ""))
        return "\n".join(p for p in parts if p)

    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in iter_components(self.components) if "custom_id" in c]

    def component(self, custom_id: str) -> dict[str, Any]:
        for c in iter_components(self.components):
            if c.get("custom_id") == custom_id:
                return c
        raise KeyError(f"no component {custom_id!r} on message {self.id}; has {self.custom_ids()}")


def iter_components(components: list[dict[str, Any]]):
    for c in components:
        yield c
        yield from iter_components(c.get("components", []))


@dataclass
class InteractionRecord:
    """One interaction the server dispatched and everything the bot answered to it."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    user_id: int
    guild_id: int | None
    shard: int = 0
    """The gateway shard the interaction was dispatched on (the guild's)."""
    sent_at: float = field(default_factory=time.monotonic)
    expires_at: float = float("inf")
    """When Discord stops honouring the token (monotonic): 15 minutes after the interaction, or the
    server's shorter `token_lifetime`."""
    callbacks: list[Callback] = field(default_factory=list)
    original: MessageRecord | None = None
    followups: list[MessageRecord] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """Requests for this interaction the server refused (late ack, double ack, ...), as Discord would."""
    answered_at: float | None = None
    """When the user first saw an answer (a message that is not a "thinking…" placeholder)."""

    @property
    def acked_at(self) -> float | None:
        return self.callbacks[0].at if self.callbacks else None

    @property
    def ack_seconds(self) -> float | None:
        return None if self.acked_at is None else self.acked_at - self.sent_at

    @property
    def answer_seconds(self) -> float | None:
        return None if self.answered_at is None else self.answered_at - self.sent_at

    @property
    def messages(self) -> list[MessageRecord]:
        """What the user can see for this interaction, in order, without placeholders."""
        found = [self.original] if self.original is not None else []
        found += self.followups
        return [m for m in found if not m.deleted and not m.loading]

    @property
    def answered(self) -> bool:
        return bool(self.messages) or any(cb.type in (6, 7, 8, 9) for cb in self.callbacks)

    @property
    def choices(self) -> list[dict[str, Any]]:
        """Autocomplete choices the bot returned."""
        for cb in self.callbacks:
            if cb.type == 8:
                return list(cb.data.get("choices", []))
        return []

    def last(self) -> MessageRecord:
        if not self.messages:
            raise AssertionError(f"interaction {self.id} has no visible message; callbacks: "
                                 f"{[cb.type for cb in self.callbacks]}, refused: {self.refused}")
        return self.messages[-1]
