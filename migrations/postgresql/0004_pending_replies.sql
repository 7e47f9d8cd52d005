-- Interactions acknowledged and not answered yet: the same table as ../0003_pending_replies.sql.

CREATE TABLE pending_replies (
    interaction_id  BIGINT PRIMARY KEY,
    guild_id        BIGINT NOT NULL,
    application_id  BIGINT NOT NULL,
    token           TEXT NOT NULL,
    expires_at      DOUBLE PRECISION NOT NULL,
    process         TEXT NOT NULL
);
