-- Each track's audio fingerprint: the same column as ../0005_track_fingerprints.sql.

ALTER TABLE tracks ADD COLUMN fingerprint BYTEA;
