"""`cratedigger` command line: the same use cases as the bot, for operators, CI and tests.

Each verb group lives in its own module of this package and exposes `register(subparsers, parent)`; the
module's handlers take the parsed args and return a JSON-able document (printed with `--json`) plus the text
a person reads. Exit codes follow DESIGN.md: 0 success, 2 bad input (one line on stderr), 1 a bug.

The verbs that start long-running processes (`run`, `sync-commands`, `worker`) are added by the process
launcher (`bot.launcher`, the `cratedigger` command), so `core` never imports `bot`; `python -m core` has
the others.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import pkgutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Settings, load_settings
from core.errors import UserError

log = logging.getLogger("cratedigger")

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT = 0, 1, 2


@dataclass
class Outcome:
    """What a verb produced: the JSON document and the human-readable text. A verb that succeeded only in
    part (some of several files were bad) still returns its document, with `error` as the one line for
    stderr, and exits 2."""

    document: Any
    text: str
    error: str | None = None


Handler = Callable[[argparse.Namespace, Settings], Outcome]
Registrar = Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors are bad input: exit 2, one line
        self.exit(EXIT_BAD_INPUT, f"cratedigger: {message}\n")


def common_options(*, defaults: bool) -> argparse.ArgumentParser:
    """The options every verb accepts, before or after the verb. Only the top level sets defaults, so a
    verb's copy does not overwrite a value given before the verb."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--data-dir", type=Path, default=default(None),
                        help="folder holding the database and the index (default: $CRATEDIGGER_DATA_DIR "
                             "or a per-user data folder)")
    parent.add_argument("--json", action="store_true", default=default(False),
                        help="print one JSON document on stdout")
    parent.add_argument("-v", "--verbose", action="store_true", default=default(False), help="log more")
    return parent


def build_parser(extra: Sequence[Registrar] = ()) -> argparse.ArgumentParser:
    parser = _Parser(prog="cratedigger", description="Music understanding for your Discord server.",
                     parents=[common_options(defaults=True)])
    parent = common_options(defaults=False)
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name.startswith("_"):  # shared helpers, not verbs
            continue
        importlib.import_module(f"{__name__}.{module.name}").register(subparsers, parent)
    for register in extra:
        register(subparsers, parent)
    return parser


def setup_logging(level: str, verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None, *, extra: Sequence[Registrar] = ()) -> int:
    """Run one verb; `extra` adds verbs defined outside core (the process launcher's)."""
    parser = build_parser(extra)
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return EXIT_OK
    try:
        settings = load_settings()
    except ValueError as exc:
        print(f"cratedigger: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.data_dir is not None:
        settings = settings.with_overrides(data_dir=args.data_dir)
    setup_logging(settings.log_level if not args.json else "WARNING", args.verbose)
    try:
        outcome = args.handler(args, settings)
    except UserError as exc:
        print(f"cratedigger: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cratedigger: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug: keep the traceback for whoever reports it
        log.exception("unexpected error in '%s'", args.verb)
        return EXIT_BUG
    if args.json:
        json.dump(outcome.document, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    elif outcome.text:
        print(outcome.text)
    if outcome.error is not None:
        print(f"cratedigger: {outcome.error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
