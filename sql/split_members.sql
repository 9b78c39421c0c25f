/* The members of a split's snapshot as it would be taken now: one row per registered content among
   the split's files not retracted (as in view live_files, migration 0008), with the label its files
   carry (images.label, the first file's, for files registered before 0004) and the first of its
   files' uris to read the bytes from; its pixel key and perceptual hash, for the near-duplicate
   measure; and the subject its files carry (0010; NULL where none does), which the fine-tune draws
   its validation holdout by. The quality gate validates these rows and freezes the same query into
   snapshot_images (include/registry/snapshots.py). In no order: sorting them cost the freeze more
   than it saved its index. The split is a bound parameter.
   Block comments only: the Astro SDK joins the lines of a SQL file. */
SELECT f.content_hash, COALESCE(f.label, i.label) AS label, f.uri, f.split, i.width, i.height, i.mode,
       COALESCE(i.pixel_hash, f.content_hash) AS pixel_key, i.perceptual_hash, f.subject
FROM (
    SELECT content_hash, split, MIN(label) AS label, MIN(uri) AS uri, MIN(subject) AS subject
    FROM image_files
    WHERE split = {{ split }} AND retracted_at IS NULL
    GROUP BY content_hash, split
) AS f
JOIN images AS i ON i.content_hash = f.content_hash
WHERE i.status = 'registered'
