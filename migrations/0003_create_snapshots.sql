-- Snapshots tie data to models: a gate run validates a named snapshot of a split, the hash of its
-- sorted (content_hash, label) pairs; training and evaluation read exactly its members.

CREATE TABLE IF NOT EXISTS snapshot_images (
    snapshot      TEXT NOT NULL,                     -- SHA-256 of the sorted "content_hash label" lines
    split         TEXT NOT NULL CHECK (split IN ('train', 'test')),
    content_hash  TEXT NOT NULL,
    label         TEXT NOT NULL,
    uri           TEXT NOT NULL,                     -- the file the bytes are read from
    PRIMARY KEY (snapshot, content_hash)
);

-- Which snapshot a gate run validated; NULL only for rows written before snapshots existed.
ALTER TABLE quality_runs ADD COLUMN IF NOT EXISTS snapshot TEXT;
CREATE INDEX IF NOT EXISTS quality_runs_split_success ON quality_runs (split, success);
