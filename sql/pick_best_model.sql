/* Rank the fine-tuned models evaluated on the latest gated test snapshot, best first.
   The snapshot is that of the newest passed quality_runs row of split 'test' (include/registry/snapshots.py,
   passed_snapshot), so no model is compared on data the gate did not pass or on other data than
   the rest. A model evaluated several times on that snapshot counts with its latest result.
   The metric name is a bound value matched against the metric columns listed here, so no text is
   ever pasted into the query; the settings accept only include.ml.SELECTION_METRICS, the same list.
   Ties: F1, then the older model, then model_id: the same winner every time.
   Block comments only: the Astro SDK joins the lines of a SQL file. */
WITH gated AS (
    SELECT snapshot
    FROM quality_runs
    WHERE split = 'test' AND success AND snapshot IS NOT NULL
    ORDER BY created_at DESC, run_id DESC
    LIMIT 1
),
latest AS (
    SELECT r.*,
           ROW_NUMBER() OVER (PARTITION BY r.model_id ORDER BY r.evaluated_at DESC, r.result_id DESC) AS nth
    FROM model_results r
    WHERE r.test_snapshot = (SELECT snapshot FROM gated)
),
scored AS (
    SELECT l.model_id, l.result_id, l.test_snapshot, l.evaluated_at,
           l.loss, l.accuracy, l.precision, l.recall, l.f1, l.roc_auc,
           m.stage, m.created_at AS model_created_at, m.path,
           CASE CAST({{ metric }} AS TEXT)
               WHEN 'roc_auc' THEN l.roc_auc
               WHEN 'f1' THEN l.f1
               WHEN 'accuracy' THEN l.accuracy
               WHEN 'precision' THEN l.precision
               WHEN 'recall' THEN l.recall
           END AS metric_value
    FROM latest l
    JOIN models m ON m.model_id = l.model_id
    WHERE l.nth = 1 AND m.role = 'fine_tuned'
)
SELECT ROW_NUMBER() OVER (
           ORDER BY metric_value DESC, f1 DESC NULLS LAST, model_created_at ASC, model_id ASC
       ) AS rank,
       CAST({{ metric }} AS TEXT) AS metric,
       scored.*
FROM scored
WHERE metric_value IS NOT NULL
