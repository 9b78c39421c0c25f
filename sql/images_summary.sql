-- What the registry holds, per split, status and label: the demo's closing report.
SELECT split, status, COALESCE(label, '-') AS label, COUNT(*) AS images, SUM(bytes) AS bytes
FROM images
GROUP BY split, status, COALESCE(label, '-')
ORDER BY split, status, label
