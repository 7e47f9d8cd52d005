"""One settings object, read from the environment and an optional `.env` file.

Every setting has a default and is listed in `.env.example`; nothing else in the code reads `os.environ`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = PACKAGE_ROOT / "models"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cratedigger"


@dataclass(frozen=True)
class Settings:
    """Deployment settings. Field names map to environment variables as `CRATEDIGGER_<NAME>` except the
    Discord ones, which use the names the community expects (`DISCORD_TOKEN`, `DEV_GUILD_ID`)."""

    discord_token: str = field(default="", repr=False)
    dev_guild_id: int | None = None
    admin_role: str = ""
    data_dir: Path = field(default_factory=_default_data_dir)
    # Scale-out (empty: the single-machine default of SQLite, an in-process pool and one gateway session).
    database_url: str = field(default="", repr=False)
    broker_url: str = field(default="", repr=False)
    queue_wait_seconds: float = 600.0
    shard_count: int | str | None = None
    shard_ids: tuple[int, ...] = ()
    models_dir: Path = DEFAULT_MODELS_DIR
    log_level: str = "INFO"
    # Limits on what a user may send.
    max_upload_mb: float = 10.0
    max_clip_seconds: float = 1200.0
    max_segments: int = 40
    library_segments: int = 16
    """Segments a library track is analysed on (spread over it), each of which the similarity index holds:
    chosen on benchmarks/bench_neighbours.py's curve over both dev libraries and bench_reindex's CPU a track
    (models/similarity.md): at 16 an excerpt finds its own track first as often as at 24 on both (68/68,
    150/150) for about 0.7 of the CPU; 24 cannot reach 10 tracks/s on two cores."""
    max_download_mb: float = 25.0
    max_download_seconds: float = 60.0
    link_analyse_seconds: float = 60.0
    fetch_allow_hosts: tuple[str, ...] = ()
    max_playlist_entries: int = 25
    # Streaming-service links (core.streaming): where each service publishes its metadata without a key,
    # and the search that finds the same recording on a site yt-dlp can download from.
    spotify_url: str = "https://open.spotify.com"
    """Spotify's pages and its oEmbed endpoint (``/oembed``, which also resolves spotify.link short links)."""
    apple_music_url: str = "https://music.apple.com"
    deezer_api_url: str = "https://api.deezer.com"
    deezer_share_url: str = "https://deezer.page.link"
    tidal_url: str = "https://tidal.com"
    track_search: str = "ytsearch5:{artist} {title}"
    # Work scheduling.
    workers: int = 2
    queue_size: int = 32
    task_timeout_seconds: float = 120.0
    worker_memory_mb: int = 4096
    user_cooldown_seconds: float = 3.0
    fetch_workers: int = 2
    fetch_queue_size: int = 8
    # Buttons kept in memory.
    pager_seconds: float = 600.0
    """How long ◀ ▶ under a /similar answer keep working (its rating menu works for ever)."""
    pagers_max: int = 200
    """/similar pagers kept at once: each holds its results and its interaction (~20 kB, more as it pins
    the allocator's pages; bench_soak --probe-memory), so a burst of /similar must not grow the bot for
    10 minutes. Past it the oldest pager stops early, as if it had timed out. 200 is a /similar every
    3 s for 10 minutes, more than a busy server sends."""
    # Nearest-neighbour index.
    index_backend: str = "hnsw"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 100
    hnsw_ef: int = 128
    annoy_trees: int = 50
    annoy_search_k: int = 50_000

    @property
    def db_path(self) -> Path:
        return self.data_dir / "cratedigger.sqlite3"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_download_bytes(self) -> int:
        return int(self.max_download_mb * 1024 * 1024)

    @property
    def sharded(self) -> bool:
        return self.shard_count is not None

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


_ENV_NAMES = {"discord_token": "DISCORD_TOKEN", "dev_guild_id": "DEV_GUILD_ID"}


def env_name(field_name: str) -> str:
    return _ENV_NAMES.get(field_name, f"CRATEDIGGER_{field_name.upper()}")


def redact(url: str) -> str:
    """Only the scheme, host, port and database (or Redis db number) of a database or broker URL, for logs
    and messages. User name, password and options never appear, even a password with an unencoded `/`, `#`,
    `?` or `@` that makes URL parsers put part of it in the host or the path: everything up to the last
    `@` is dropped."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        return "(not a URL)"
    location = rest.rsplit("@", 1)[-1]
    host, _, path = re.split(r"[?#]", location, maxsplit=1)[0].partition("/")
    database = path.split("/", 1)[0]
    return f"{scheme}://{host}" + (f"/{database}" if database else "")


def _shard_count(raw: str) -> int | str:
    """A number of gateway shards (>= 1), or "auto" for the count Discord recommends."""
    value = raw.strip().lower()
    if value == "auto":
        return value
    count = int(value)
    if count < 1:
        raise ValueError("a shard count is at least 1 (or 'auto')")
    return count


def _parse(raw: str, default: Any, name: str) -> Any:
    if name == "shard_count":
        return _shard_count(raw)
    if name == "shard_ids":
        return tuple(int(part) for part in raw.split(",") if part.strip())
    if isinstance(default, Path) or name.endswith("_dir"):
        return Path(raw).expanduser()
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if name == "dev_guild_id":
        return int(raw) if raw.strip() else None
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def load_settings(env_file: str | os.PathLike[str] | None = ".env", **overrides: Any) -> Settings:
    """Settings from `env_file` (if it exists; real environment variables win) and the environment."""
    values: dict[str, Any] = {}
    file_values: dict[str, str | None] = {}
    if env_file is not None and Path(env_file).is_file():
        from dotenv import dotenv_values

        file_values = dotenv_values(env_file)
    defaults = Settings()
    for f in fields(Settings):
        name = env_name(f.name)
        raw = os.environ.get(name, file_values.get(name))
        if raw is None or raw == "" and f.name != "discord_token":
            continue
        try:
            values[f.name] = _parse(raw, getattr(defaults, f.name), f.name)
        except ValueError as exc:
            raise ValueError(f"setting {name}={raw!r} is not valid: {exc}") from None
    values.update(overrides)
    settings = Settings(**values)
    _check_shards(settings)
    _check_index_backend(settings)
    return settings


def _check_index_backend(settings: Settings) -> None:
    from core.index import require_backend  # here, not at the top: core.index reads this module

    try:
        require_backend(settings.index_backend)
    except (ValueError, ImportError) as exc:
        raise ValueError(f"setting CRATEDIGGER_INDEX_BACKEND={settings.index_backend!r} is not valid: {exc}") \
            from None


def _check_shards(settings: Settings) -> None:
    if not settings.shard_ids:
        return
    if not isinstance(settings.shard_count, int):
        raise ValueError("setting CRATEDIGGER_SHARD_IDS needs CRATEDIGGER_SHARD_COUNT set to a number")
    wrong = [i for i in settings.shard_ids if not 0 <= i < settings.shard_count]
    if wrong or len(set(settings.shard_ids)) != len(settings.shard_ids):
        raise ValueError(f"setting CRATEDIGGER_SHARD_IDS must name distinct shards 0 to "
                         f"{settings.shard_count - 1}, not {list(settings.shard_ids)}")
