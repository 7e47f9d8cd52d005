-- Each analysed segment's front-end outputs, so the nearest-neighbour index can hold every segment of a
-- track (core.segment_match) and reasons can name the section that matched: float32 little-endian arrays,
-- (n, 200) embeddings, (n, 50) tag probabilities, (n,) start times in seconds. NULL for tracks analysed
-- before this migration: their one track vector stands in for their segments until the next reindex.

ALTER TABLE tracks ADD COLUMN segment_embeddings BLOB;
ALTER TABLE tracks ADD COLUMN segment_tags BLOB;
ALTER TABLE tracks ADD COLUMN segment_starts BLOB;
