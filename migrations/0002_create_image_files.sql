-- Every file ever registered, by its storage uri: per-file traceability for 100k files lives here,
-- not in task instances. `images` holds one row per distinct content; this table maps each file
-- (including re-uploads under another name) to that content.
CREATE TABLE IF NOT EXISTS image_files (
    uri            TEXT PRIMARY KEY,
    content_hash   TEXT NOT NULL,
    split          TEXT NOT NULL CHECK (split IN ('train', 'test')),
    run_id         TEXT NOT NULL,
    registered_at  TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT current_timestamp
);
CREATE INDEX IF NOT EXISTS image_files_content_hash ON image_files (content_hash);

-- Leakage: the same bytes uploaded to train and to test. The quality gate fails on any row here.
CREATE VIEW leaked_images AS
SELECT content_hash, COUNT(DISTINCT split) AS splits, COUNT(*) AS files, MIN(uri) AS example_uri
FROM image_files
GROUP BY content_hash
HAVING COUNT(DISTINCT split) > 1;
