/* The snapshot the newest passing quality-gate run of a split validated, no row before one passed
   (passed_snapshot_id, include/registry/snapshots.py): the gated data training and evaluation take,
   and what the gate compares a new snapshot with before announcing it. The split is a bound
   parameter. */
SELECT snapshot
FROM quality_runs
WHERE split = {{ split }} AND success AND snapshot IS NOT NULL
ORDER BY created_at DESC, run_id DESC
LIMIT 1
