"""One per-user cooldown shared by every heavy command, so alternating /genre and /similar does not
bypass it (discord.py's cooldowns are per command)."""
from __future__ import annotations

import time
from collections.abc import Callable


class UserCooldown:
    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._next_allowed: dict[int, float] = {}

    def hit(self, user_id: int) -> float:
        """0 if the user may start heavy work now (and starts their cooldown), else seconds to wait."""
        now = self._clock()
        wait = self._next_allowed.get(user_id, 0.0) - now
        if wait > 0:
            return wait
        self._next_allowed[user_id] = now + self.seconds
        if len(self._next_allowed) > 10_000:  # forget users whose cooldown has passed
            self._next_allowed = {u: t for u, t in self._next_allowed.items() if t > now}
        return 0.0
