"""Properties over the strings users type: moods, links and anything we echo back in a reply."""
from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.text import safe
from core.config import Settings
from core.errors import UserError
from core.mood import MOODS, parse_mood
from core.netguard import check_url

SETTINGS = Settings()
NASTY = st.sampled_from([
    "@everyone", "@here", "<@&123456789012345678>", "<@123>", "[click](https://evil.example)", "# big",
    "`code`", "**bold**", "||spoiler||", "\u202eevil", "x'); DROP TABLE tracks; --", "\x00", "\n\n",
])
TEXT = st.one_of(st.text(max_size=300), st.lists(st.one_of(NASTY, st.text(max_size=20)), max_size=12).map("".join))


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_parse_mood_returns_a_mood_or_a_friendly_error(text: str) -> None:
    try:
        assert parse_mood(text) in MOODS
    except UserError as exc:
        assert "calm" in str(exc) and "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.one_of(TEXT, st.builds(lambda s, h, p: f"{s}://{h}/{p}",
                                 st.sampled_from(["http", "https", "file", "ftp", "gopher", "HTTP", ""]),
                                 st.one_of(st.text(max_size=40), st.sampled_from(
                                     ["127.0.0.1", "localhost", "[::1]", "0x7f000001", "2130706433",
                                      "10.0.0.1", "169.254.169.254", "user:pw@example.com", "0177.0.0.1"])),
                                 st.text(max_size=30))))
def test_link_precheck_never_raises_anything_but_user_errors(url: str) -> None:
    try:
        check_url(url, SETTINGS)
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(TEXT, st.integers(min_value=1, max_value=200))
def test_echoed_text_cannot_ping_or_break_lines(text: str, limit: int) -> None:
    shown = safe(text, limit)
    assert "\n" not in shown and "\u202e" not in shown
    assert "@everyone" not in shown and "@here" not in shown  # escaped as "@\u200beveryone"
    assert not re.search(r"<@[!&]?\d{17,20}>", shown)  # user and role mentions (snowflakes) are broken up
