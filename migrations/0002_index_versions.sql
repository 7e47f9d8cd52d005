-- Published versions of each guild's nearest-neighbour index, for deployments where several processes
-- (bots on other machines) must load the same index: a reindex inserts a version, every process serves the
-- newest. Single-machine SQLite deployments keep their index as files in the data folder and leave this
-- table empty. The newest two versions of a guild are kept (a reader may be loading the one before).

CREATE TABLE index_versions (
    version     INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id    INTEGER NOT NULL REFERENCES guilds(id) ON DELETE CASCADE,
    backend     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    count       INTEGER NOT NULL,
    data        BLOB NOT NULL,                   -- the index folder's files, as an uncompressed tar
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX index_versions_guild ON index_versions (guild_id, version);
