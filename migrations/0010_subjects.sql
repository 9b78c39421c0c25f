-- Subjects (issue 20): the patient or study a file was taken from, so one subject's slices stay on
-- one side of every split. Optional: from a `subject` column of the labels CSV or a
-- `subject=<id>` folder of the upload path (include/registry/records.py); NULL for files without
-- one and for every row registered before 0010.

-- The subject each file carried (image_files), and the first file's (images, as for label).
ALTER TABLE image_files ADD COLUMN IF NOT EXISTS subject TEXT;
ALTER TABLE images ADD COLUMN IF NOT EXISTS subject TEXT;

-- A snapshot keeps its images' subjects: the fine-tune draws its validation holdout by subject.
ALTER TABLE snapshot_images ADD COLUMN IF NOT EXISTS subject TEXT;

-- live_files gains the file's subject. The columns it had stay first and unchanged, so PostgreSQL
-- replaces the view in place and the views over it (migration 0008) keep working.
CREATE OR REPLACE VIEW live_files AS
SELECT f.uri, f.content_hash, f.split, COALESCE(f.label, i.label) AS label, f.run_id, f.registered_at,
       COALESCE(i.pixel_hash, f.content_hash) AS pixel_key, i.perceptual_hash,
       i.status, i.width, i.height, i.mode, f.subject
FROM image_files f
LEFT JOIN images i ON i.content_hash = f.content_hash
WHERE f.retracted_at IS NULL;

-- Leakage by subject: subjects with registered files (not retracted) in both splits, so the test
-- split would score a model on a patient it trained on. Files without a subject are not judged;
-- quarantined files are in no snapshot.
CREATE OR REPLACE VIEW leaked_subjects AS
SELECT subject,
       COUNT(CASE WHEN split = 'train' THEN 1 END) AS train_files,
       COUNT(CASE WHEN split = 'test' THEN 1 END) AS test_files
FROM live_files
WHERE subject IS NOT NULL AND status = 'registered'
GROUP BY subject
HAVING MIN(split) <> MAX(split);
