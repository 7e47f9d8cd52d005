"""Keep native decoders' chatter off the terminal.

libsndfile reads MP3 through libmpg123, which writes `Note: Illegal Audio-MPEG-Header ...` and `Note: Trying
to resync...` straight to file descriptor 2 when a file is not really MP3 (a text file renamed .mp3). Python
never sees those writes, so neither logging nor redirecting `sys.stderr` can stop them, and they broke the
promise of one line on stderr per bad file (and cut through `library add`'s progress bar).

`quiet_native_stderr` points fd 2 at a temporary file while a decode runs, then logs what the decoders wrote
at DEBUG (so `-v` still shows it) and writes back anything else (a Python warning, another thread's log
line) to the real stderr, so nothing is lost. Captures may overlap (threads of one process decoding at the
same time): the first one in redirects, the last one out restores and sorts what was written.
"""
from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, ParamSpec, TypeVar

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

DECODER_PREFIXES = ("Note: ", "Warning: ", "Error: ")
"""How libmpg123's messages begin (`Note: ...`, `Warning: ...`); its `[src/libmpg123/...] error: ...` lines
name it. Other lines are written back to stderr."""

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None
_sink: IO[bytes] | None = None


def _flush() -> None:
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed or detached stream has nothing buffered for us
            pass


def _enter() -> None:
    global _depth, _saved_fd, _sink
    with _lock:
        _depth += 1
        if _depth > 1:
            return
        _flush()
        _sink = tempfile.TemporaryFile()
        _saved_fd = os.dup(2)
        os.dup2(_sink.fileno(), 2)


def _leave() -> bytes:
    global _depth, _saved_fd, _sink
    with _lock:
        _depth -= 1
        if _depth > 0 or _saved_fd is None or _sink is None:
            return b""
        _flush()
        os.dup2(_saved_fd, 2)
        os.close(_saved_fd)
        _sink.seek(0)
        written = _sink.read()
        _sink.close()
        _saved_fd, _sink = None, None
        return written


def _sort(written: bytes) -> None:
    """Decoder lines to the DEBUG log, the rest back to the real stderr, in their order."""
    others: list[str] = []
    for line in written.decode("utf-8", "replace").splitlines():
        if line.startswith(DECODER_PREFIXES) or "mpg123" in line:
            log.debug("decoder said: %s", line)
        elif line.strip():
            others.append(line)
    if others:
        os.write(2, ("\n".join(others) + "\n").encode("utf-8", "replace"))


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Run the block with fd 2 captured (see the module's docstring)."""
    _enter()
    try:
        yield
    finally:
        _sort(_leave())


def quiet(fn: Callable[P, T]) -> Callable[P, T]:
    """`fn` run inside `quiet_native_stderr`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with quiet_native_stderr():
            return fn(*args, **kwargs)

    return wrapper
