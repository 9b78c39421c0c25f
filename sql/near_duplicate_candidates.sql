/* The files of the other split that have a perceptual hash (not retracted: view live_files,
   migration 0008), each with its pixel key: what the quality gate compares the gated split's
   members with to find near-duplicates across splits (include/quality/frames.py). The gated split
   is a bound parameter. */
SELECT uri, pixel_key, perceptual_hash
FROM live_files
WHERE perceptual_hash IS NOT NULL AND split <> {{ split }}
