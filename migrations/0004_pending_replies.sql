-- Interactions a bot process has acknowledged ("thinking…") and not answered yet. A process that dies
-- (SIGKILL, a lost machine) leaves its rows here; the process that takes over its shards tells each member,
-- through the interaction's token (good for 15 minutes), that the request was lost and should be sent again,
-- instead of leaving them "thinking" for ever. A row lives for the seconds its request takes.

CREATE TABLE pending_replies (
    interaction_id  INTEGER PRIMARY KEY,
    guild_id        INTEGER NOT NULL,
    application_id  INTEGER NOT NULL,
    token           TEXT NOT NULL,          -- the interaction's webhook token: answers it, nothing else
    expires_at      REAL NOT NULL,          -- Unix time when Discord stops honouring the token
    process         TEXT NOT NULL           -- the bot process that acknowledged it
);
