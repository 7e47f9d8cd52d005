"""`cratedigger db upgrade`: apply pending migrations to the database in the data folder."""
from __future__ import annotations

import argparse

from core.cli import Outcome
from core.config import Settings
from core.stopping import run
from core.store import Store


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    db = subparsers.add_parser("db", help="database maintenance", parents=[parent])
    verbs = db.add_subparsers(dest="db_verb", metavar="ACTION", required=True)
    upgrade = verbs.add_parser("upgrade", help="apply pending schema migrations", parents=[parent])
    upgrade.set_defaults(handler=upgrade_db)


def upgrade_db(args: argparse.Namespace, settings: Settings) -> Outcome:
    async def go() -> tuple[list[str], int]:
        store = await Store.open(settings.db_path)  # opening applies whatever is pending
        try:
            return store.applied, await store.schema_version()
        finally:
            await store.close()

    applied, version = run(go())
    text = f"database {settings.db_path} is at schema version {version}"
    if applied:
        text += f" (applied {', '.join(applied)})"
    return Outcome({"database": str(settings.db_path), "schema_version": version, "applied": applied}, text)
