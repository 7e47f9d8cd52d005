"""`cratedigger` command line: the same use cases as the bot, for operators, CI and tests.

Each verb group lives in its own module of this package and exposes `register(subparsers, parent)`; the
module's handlers take the parsed args and return a JSON-able document (printed with `--json`) plus the text
a person reads. Exit codes follow DESIGN.md: 0 success, 2 bad input (one line on stderr), 1 a bug. A verb
given several items (files, folders, links) tries every one; if any failed it still prints what it did,
failures included, and exits 2 with one line on stderr: a script can trust 0 to mean "all of it".
With `--json` stdout always holds one JSON document, an error too (`{"error": ...}`).

Logs go to stderr. The one-shot verbs log warnings and errors only, unless `-v`: their answer is the output.
The long-running verbs (`run`, `worker`; their parsers set `long_running`) log at CRATEDIGGER_LOG_LEVEL.

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
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Settings, load_settings
from core.errors import UserError
from core.stopping import Terminated

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
    parent.add_argument("-v", "--verbose", action="store_true", default=default(False),
                        help="also log what is going on, on stderr (INFO; DEBUG for the long-running verbs)")
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


def log_level(configured: str, *, verbose: bool, long_running: bool) -> int:
    """A service's log keeps the configured level (INFO by default; `-v` adds DEBUG); a one-shot verb's
    stderr holds warnings and errors only unless `-v` asks for its INFO lines too."""
    level = getattr(logging, configured.upper(), logging.INFO)
    if long_running:
        return logging.DEBUG if verbose else level
    return min(level, logging.INFO) if verbose else max(level, logging.WARNING)


def setup_logging(level: int) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def failures_line(failed: Sequence[tuple[str, str]], total: int, noun: str) -> str | None:
    """The one stderr line for a verb whose items partly failed: the reason itself when the only item
    failed, else how many of how many and the first reason. None when nothing failed."""
    if not failed:
        return None
    source, reason = failed[0]
    if total == 1:
        return reason
    return f"{len(failed)} of {total} {noun} failed; first: {source}: {reason}"


def items_outcome(document: Any, text: str, failed: Sequence[tuple[str, str]], total: int, noun: str) -> Outcome:
    """The outcome of a verb over several items: exit 2 with `failures_line` if any failed; no text on
    stdout when the only item failed (its one line on stderr says it all; `--json` still gets the
    document)."""
    only_failed = total == 1 and len(failed) == 1
    return Outcome(document, "" if only_failed else text, error=failures_line(failed, total, noun))


def _fail(args: argparse.Namespace, message: str) -> int:
    """Bad input: one line on stderr, and with --json the same as a document on stdout."""
    if getattr(args, "json", False):
        json.dump({"error": message}, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    print(f"cratedigger: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


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
        return _fail(args, str(exc))
    if args.data_dir is not None:
        settings = settings.with_overrides(data_dir=args.data_dir)
    setup_logging(log_level(settings.log_level, verbose=args.verbose,
                            long_running=getattr(args, "long_running", False)))
    try:
        outcome = args.handler(args, settings)
    except UserError as exc:
        return _fail(args, str(exc))
    except Terminated:  # SIGTERM: stopped as on Ctrl-C, with the shell's status for a signal's end
        print("cratedigger: stopped (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
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
