-- Each analysed segment's front-end outputs: the same columns as ../0003_track_segments.sql.

ALTER TABLE tracks ADD COLUMN segment_embeddings BYTEA;
ALTER TABLE tracks ADD COLUMN segment_tags BYTEA;
ALTER TABLE tracks ADD COLUMN segment_starts BYTEA;
