"""A process that writes tags as fast as it can and prints each one once it is committed; the crash-safety
test kills it with SIGKILL at a random moment and checks that every printed tag survived."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from core.store import Store


async def main(db: Path, track_id: int) -> None:
    store = await Store.open(db)
    user = 1
    while True:
        await store.add_tag(1, user, track_id, f"mood-{user}")
        print(user, flush=True)
        user += 1


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
