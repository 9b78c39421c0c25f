-- Leakage and label conflicts by pixels, not bytes, and uploads an operator can take back.
--
-- images.pixel_hash: SHA-256 of the decoded pixels with their mode and size, so the same picture
-- saved twice (another container, a text chunk, other metadata) is one image. images.perceptual_hash:
-- 256 bits (64 hex digits) of a DCT hash that a resized or re-compressed copy keeps, nearly
-- (include/registry/pixels.py). Both NULL for rows registered before 0008 and for files that do
-- not decode: those are compared by their file hash only, as before (no backfill: a migration
-- reads no image files).
ALTER TABLE images ADD COLUMN IF NOT EXISTS pixel_hash TEXT;
ALTER TABLE images ADD COLUMN IF NOT EXISTS perceptual_hash TEXT;

-- A retracted file (`make retract`, DAG retract_upload) keeps its row, marked with who, why and
-- when, and where its bytes were moved; it leaves every snapshot, leak and conflict from then on.
ALTER TABLE image_files ADD COLUMN IF NOT EXISTS retracted_at TIMESTAMP WITH TIME ZONE;
ALTER TABLE image_files ADD COLUMN IF NOT EXISTS retracted_by TEXT;
ALTER TABLE image_files ADD COLUMN IF NOT EXISTS retraction_reason TEXT;
ALTER TABLE image_files ADD COLUMN IF NOT EXISTS quarantined_as TEXT;

-- The views over image_files change columns: PostgreSQL replaces a view only with the same columns.
DROP VIEW IF EXISTS leaked_images;
DROP VIEW IF EXISTS label_conflicts;

-- Files not retracted, with what the registry knows of their content. pixel_key is the pixel hash
-- where there is one, else the file hash; label is the one the file carried (images.label, the
-- first file's, for files registered before 0004).
CREATE VIEW live_files AS
SELECT f.uri, f.content_hash, f.split, COALESCE(f.label, i.label) AS label, f.run_id, f.registered_at,
       COALESCE(i.pixel_hash, f.content_hash) AS pixel_key, i.perceptual_hash,
       i.status, i.width, i.height, i.mode
FROM image_files f
LEFT JOIN images i ON i.content_hash = f.content_hash
WHERE f.retracted_at IS NULL;

-- What the files of each pixel key span. MIN and MAX answer "more than one split (label)?" as
-- COUNT(DISTINCT) does, and a query that reads only them (the quality gate) needs no sort for it.
-- MIN and MAX skip NULL labels (quarantined files may have none).
CREATE VIEW pixel_groups AS
SELECT pixel_key, MIN(split) AS first_split, MAX(split) AS last_split, MIN(label) AS first_label,
       MAX(label) AS last_label, COUNT(DISTINCT split) AS splits, COUNT(DISTINCT label) AS labels,
       COUNT(*) AS files, MIN(content_hash) AS content_hash, MIN(uri) AS example_uri
FROM live_files
GROUP BY pixel_key;

-- Leakage: the same pixels in train and in test. content_hash is one of the files' hashes.
CREATE VIEW leaked_images AS
SELECT pixel_key, content_hash, splits, files, example_uri FROM pixel_groups WHERE first_split <> last_split;

-- The same pixels registered under more than one label.
CREATE VIEW label_conflicts AS
SELECT pixel_key, content_hash, labels, files, example_uri FROM pixel_groups WHERE first_label <> last_label;
