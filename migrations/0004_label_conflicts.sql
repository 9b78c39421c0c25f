-- The label each file carried when it was registered, and the contents registered under more than
-- one label: the same bytes uploaded as `glioma (1).jpg` and as `meningioma (7).jpg`, or named
-- differently by the labels CSV. `images` keeps the label of the first file seen; the quality gate
-- fails on any row of `label_conflicts` instead of trusting that first writer.
ALTER TABLE image_files ADD COLUMN IF NOT EXISTS label TEXT;

CREATE OR REPLACE VIEW label_conflicts AS
SELECT content_hash, COUNT(DISTINCT label) AS labels, COUNT(*) AS files, MIN(uri) AS example_uri
FROM image_files
WHERE label IS NOT NULL
GROUP BY content_hash
HAVING COUNT(DISTINCT label) > 1;
