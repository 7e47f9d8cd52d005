-- Each track's audio fingerprint (core.fingerprint): landmark pairs of spectral peaks over the sections the
-- analysis decoded, as uint32 little-endian (hash, frame) pairs. It tells /similar that a query is a copy or
-- an excerpt of this very recording. NULL for tracks analysed before this migration: they gain one at their
-- next reindex (the analysis version names the fingerprint), and until then the embedding rule decides.

ALTER TABLE tracks ADD COLUMN fingerprint BLOB;
