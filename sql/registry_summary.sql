/* The registry of one split after a preprocess run: images per status and label, plus the number
   of contents found in both splits (leakage). The split is a bound parameter, not text.
   Block comments only: the Astro SDK joins the lines of a SQL file, so a line comment would swallow the query. */
SELECT status, COALESCE(label, '-') AS label, COUNT(*) AS images
FROM images
WHERE split = {{ split }}
GROUP BY status, COALESCE(label, '-')
UNION ALL
SELECT 'leaked' AS status, '-' AS label, COUNT(*) AS images
FROM leaked_images
