"""Commercial songs as weakly-labelled genre data: the 4Q set's AllMusic genres read as sets of our genres.

AllMusic files a song under broad genres, often several ("Country; Pop/Rock"), and its "Pop/Rock" covers
three of GTZAN's ten. So a 4Q song does not get one label but the set of our genres it may be
(`allowed_genres`):
- Rap -> hiphop; Reggae, Country, Blues, Jazz, Classical -> the genre of the same name;
- Pop/Rock -> {rock, pop, metal} (AllMusic files heavy metal under Pop/Rock: the "pop/rock called metal"
  songs of the shipped model were metal bands);
- a song with several genres may be any genre of any of them (the union);
- AllMusic genres with no counterpart here (Electronic, R&B, Vocal, Latin, ...) add nothing; a song with
  none of the mapped ones is left out.
The loss reads such a set as "any of these" (core.training.genre_heads: the summed probability of the
allowed genres); the "clean subset" keeps only songs whose set is one genre.

The team's check reads the same songs by six AllMusic labels (`check_label`): a song is scored when exactly
one of Pop/Rock, Jazz, Blues, Rap, Country, Reggae is among its genres, and is right when the verdict is in
that label's set. Songs are grouped by artist in every split, and the artists `FourQ.untouched` sets aside
(the mood model's set-aside, core.training.mood_sources) are scored once at the end, never while choosing.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from core.constants import GENRES
from core.training.genre_data import Clip

ALLMUSIC_TO_GENRES: dict[str, tuple[str, ...]] = {
    "Rap": ("hiphop",),
    "Reggae": ("reggae",),
    "Country": ("country",),
    "Blues": ("blues",),
    "Jazz": ("jazz",),
    "Classical": ("classical",),
    "Pop/Rock": ("rock", "pop", "metal"),
}
CHECK_LABELS: tuple[str, ...] = ("Pop/Rock", "Jazz", "Blues", "Rap", "Country", "Reggae")
"""The six AllMusic genres the team scores genre on."""
SPLIT, ASIDE = "4q", "4q_aside"
"""Clip.split of 4Q songs used while choosing, and of the set-aside artists' songs."""


def allowed_genres(allmusic: Iterable[str]) -> tuple[str, ...]:
    """Our genres a song filed under these AllMusic genres may be, in GENRES order (empty: none maps)."""
    allowed = {g for name in allmusic for g in ALLMUSIC_TO_GENRES.get(name.strip(), ())}
    return tuple(g for g in GENRES if g in allowed)


def check_label(allmusic: Iterable[str]) -> str:
    """The one of CHECK_LABELS among the song's genres, or "" when it has none or several of them."""
    found = [name for name in CHECK_LABELS if name in {g.strip() for g in allmusic}]
    return found[0] if len(found) == 1 else ""


def fourq_clips(files: Sequence[Path], artists: Sequence[str], genres: Sequence[Sequence[str]],
                aside: Sequence[bool]) -> list[Clip]:
    """4Q songs with a mapped genre as clips: grouped by artist, `allowed` their set of our genres, `check`
    their six-label reading. `genre` (what stratified folds and confusion tables read) is the first allowed
    genre: a stand-in, the loss reads `allowed`."""
    clips = []
    for path, artist, names, is_aside in zip(files, artists, genres, aside):
        allowed = allowed_genres(names)
        if not allowed:
            continue
        clips.append(Clip(f"4q:{artist.strip().lower()}", allowed[0], ASIDE if is_aside else SPLIT, "4q",
                          Path(path), allowed=allowed, check=check_label(names)))
    return clips
