/* The newest quality-gate run of a split, passed or not, for the demo's summary (launcher/summary.py):
   its verdict, the snapshot it validated, its Data Docs page and its run. The split is a bound
   parameter. */
SELECT success, snapshot, report_path, run_id
FROM quality_runs
WHERE split = {{ split }}
ORDER BY created_at DESC
LIMIT 1
