-- Initial schema. Never edit a migration that has shipped: add 0002_*.sql instead.

CREATE TABLE guilds (
    id          INTEGER PRIMARY KEY,            -- Discord guild id; 0 is the command line's own library
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,            -- Discord user id; 0 is the command line's operator
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE tracks (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id          INTEGER NOT NULL REFERENCES guilds(id) ON DELETE CASCADE,
    source            TEXT NOT NULL,            -- the path or URL it was added from, as given
    audio_path        TEXT NOT NULL,            -- where its audio is on this machine (source or stored copy)
    content_hash      TEXT NOT NULL,            -- sha256 of the audio file, to detect duplicates
    file_size         INTEGER,
    file_mtime        REAL,                     -- with file_size: a changed file is re-analysed
    title             TEXT NOT NULL,
    artist            TEXT,
    duration          REAL,                     -- seconds of audio analysed (after trimming silence)
    added_by          INTEGER,
    added_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    status            TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'failed')),
    error             TEXT,
    analysis_version  TEXT,                     -- models and features that produced the columns below
    analysed_at       TEXT,
    genre             TEXT,
    genre_confidence  REAL,
    genre_probs       TEXT,                     -- JSON {genre: p}
    mood              TEXT,
    mood_confidence   REAL,
    mood_scores       TEXT,                     -- JSON {mood: score}
    gems              TEXT,                     -- JSON {emotion: score}
    embedding         BLOB,                     -- float32 little-endian; the index is rebuilt from these
    embedding_kind    TEXT,
    UNIQUE (guild_id, source),
    UNIQUE (guild_id, content_hash)
);
CREATE INDEX tracks_guild_status ON tracks (guild_id, status);

CREATE TABLE mood_tags (
    guild_id    INTEGER NOT NULL REFERENCES guilds(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    track_id    INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    mood        TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (user_id, track_id, mood)
);
CREATE INDEX mood_tags_track ON mood_tags (track_id);

CREATE TABLE feedback (
    guild_id    INTEGER NOT NULL REFERENCES guilds(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    track_id    INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    value       INTEGER NOT NULL CHECK (value IN (-1, 1)),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (user_id, track_id)
);

CREATE TABLE history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id    INTEGER NOT NULL REFERENCES guilds(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('genre', 'mood', 'similar', 'recommended', 'tag', 'feedback')),
    track_id    INTEGER REFERENCES tracks(id) ON DELETE SET NULL,
    detail      TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX history_user ON history (guild_id, user_id, created_at);
