"""Settings come from the environment and .env, and .env.example lists every one of them."""
from __future__ import annotations

import logging
import re
from dataclasses import fields
from pathlib import Path

import pytest

from core.config import Settings, env_name, load_settings, redact
from tests.conftest import REPO_ROOT


def test_env_example_lists_every_setting_with_its_default() -> None:
    text = (REPO_ROOT / ".env.example").read_text()
    listed = dict(re.findall(r"^([A-Z_]+)=(.*)$", text, flags=re.M))
    defaults = Settings()
    for f in fields(Settings):
        name = env_name(f.name)
        assert name in listed, f"{name} missing from .env.example"
        value = getattr(defaults, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value is not None:
            assert float(listed[name]) == float(value), f"{name}: .env.example says {listed[name]}, code {value}"


def test_env_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("CRATEDIGGER_MAX_UPLOAD_MB=4\nCRATEDIGGER_WORKERS=3\nDEV_GUILD_ID=123\n"
                   "CRATEDIGGER_FETCH_ALLOW_HOSTS=127.0.0.1, localhost:8080\n")
    monkeypatch.setenv("CRATEDIGGER_WORKERS", "1")  # the real environment wins over the file
    monkeypatch.setenv("CRATEDIGGER_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings(env)
    assert settings.max_upload_bytes == 4 * 1024 * 1024
    assert settings.workers == 1 and settings.dev_guild_id == 123
    assert settings.fetch_allow_hosts == ("127.0.0.1", "localhost:8080")
    assert settings.db_path == tmp_path / "data" / "cratedigger.sqlite3"


def test_bad_value_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRATEDIGGER_MAX_SEGMENTS", "lots")
    with pytest.raises(ValueError, match="CRATEDIGGER_MAX_SEGMENTS"):
        load_settings(None)


def test_an_unknown_index_backend_is_refused_when_the_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRATEDIGGER_INDEX_BACKEND", "faiss")
    with pytest.raises(ValueError, match="CRATEDIGGER_INDEX_BACKEND='faiss'.*choose one of hnsw, annoy, exact"):
        load_settings(None)


def test_token_is_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "secret-token-value")
    settings = load_settings(None)
    assert settings.discord_token == "secret-token-value" and "secret-token-value" not in repr(settings)


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://cd:secret@db:5432/crate", "postgresql://db:5432/crate"),
    ("postgresql://cd:pa/ss@db:5432/crate", "postgresql://db:5432/crate"),
    ("postgresql://cd:pa#ss@db:5432/crate?sslmode=require", "postgresql://db:5432/crate"),
    ("postgresql://cd:pa?ss@db/crate", "postgresql://db/crate"),
    ("postgresql://cd:p@ss/w@db:5432/crate", "postgresql://db:5432/crate"),
    ("redis://:hunter2@redis:6379/0", "redis://redis:6379/0"),
    ("redis://redis:6379", "redis://redis:6379"),
    ("no scheme here", "(not a URL)"),
])
def test_redact_shows_host_port_and_database_only(url: str, shown: str) -> None:
    assert redact(url) == shown


async def test_a_password_with_url_delimiters_never_reaches_the_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The engine logs where it connects before connecting; nothing listens on port 1 here."""
    from core.store import Store

    caplog.set_level(logging.DEBUG)
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver makes of the refused connection
        await Store.connect(Settings(data_dir=tmp_path,
                                     database_url="postgresql://cd:se/cr#et?pw@127.0.0.1:1/x"))
    assert "127.0.0.1:1/x" in caplog.text
    assert not any(piece in caplog.text for piece in ("se/cr", "cr#et", "et?pw", "cd:"))
