"""Typed errors that `core` raises for anything a user can cause.

Every error here carries a one-line message a user can act on; the CLI prints it and exits 2, the bot
shows it as an ephemeral reply. Anything *not* derived from `UserError` is a bug (exit 1, logged).
"""
from __future__ import annotations


class UserError(Exception):
    """Base for errors caused by input, not by a bug. `str(err)` is the friendly one-line message."""


class FileMissing(UserError):
    """The path given does not exist or is not a file."""


class UnsupportedAudio(UserError):
    """The bytes are not audio we can decode (corrupt, wrong extension, an image renamed .mp3, ...)."""


class EmptyAudio(UserError):
    """The audio decodes but holds nothing to analyse (zero length, or only silence)."""


class TooLong(UserError):
    """The clip or download is longer than the configured cap."""


class TooLarge(UserError):
    """The upload or download is bigger than the configured cap."""


class FetchRefused(UserError):
    """A link we will not follow: bad scheme, private address, playlist, live stream, unsupported site."""


class PlaylistLink(FetchRefused):
    """A link to several tracks where one was expected. `/similar` and `/genre` refuse it with this message;
    adding to the library lists the playlist's entries instead (`core.playlist`)."""


class FetchFailed(UserError):
    """A link we tried to follow but could not get audio from (404, timeout, ...)."""


class UnknownMood(UserError):
    """A mood name that is not one of ours; the message lists the valid ones."""


class EmptyLibrary(UserError):
    """There is nothing in the library to search or recommend from."""


class UnknownTrack(UserError):
    """A track id that is not in this server's library."""


class TooSlow(UserError):
    """Analysing the input took longer than the configured bound; the worker doing it was stopped."""


class Busy(UserError):
    """The work queue is full; the message says when to try again."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MissingExtra(ImportError):
    """A model kind or feature that needs an optional extra the install lacks (the runtime leaves out what
    the default models do not read). The message names the pip command that adds it. An ImportError, so a
    loader that falls back to the next model (core.genre.load_genre_model) treats it as "cannot run here"."""


class ModelMismatch(Exception):
    """A model artefact was made with other audio constants than ours: a deployment bug, not user input."""


class StoreUnavailable(UserError):
    """The database cannot be reached (restarting, or the network to it is down): a moment's outage, said
    as one line, not a bug with an error id."""


class MemberBusy(UserError):
    """The member already has a request running: one at a time each, so no member can fill the queues."""


class LibraryBusy(UserError):
    """Another process is reindexing this library; one reindex per library at a time, deployment-wide."""
