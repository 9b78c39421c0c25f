/* Choose the candidate on validation; bring its and production's results on the test snapshot.
   The newest sweep (the train_model run of the newest fine-tuned model) is ranked by each model's
   VALIDATION metric (models.val_*, the fine-tune's kept epoch): the test snapshot never picks among
   models, it only confirms the one chosen, so its score is not biased up by the choice. Production's row comes too, with rank NULL, wherever it was
   trained: the decision compares the two on the same test images.
   The test snapshot is that of the newest passed quality_runs row of split 'test' (passed_snapshot);
   a model evaluated several times on it counts with its latest result.
   The metric name is a bound value matched against the metric columns listed here, so no text is
   ever pasted into the query; the settings accept only include.ml.SELECTION_METRICS, the same list.
   Ties: validation loss, then the older model, then model_id: the same winner every time.
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
fine_tuned AS (
    SELECT m.model_id, m.stage, m.created_at AS model_created_at, COALESCE(m.run_id, m.model_id) AS sweep,
           m.val_loss,
           CASE CAST({{ metric }} AS TEXT)
               WHEN 'roc_auc' THEN m.val_roc_auc
               WHEN 'f1' THEN m.val_f1
               WHEN 'accuracy' THEN m.val_accuracy
               WHEN 'precision' THEN m.val_precision
               WHEN 'recall' THEN m.val_recall
           END AS validation_value
    FROM models m
    WHERE m.role = 'fine_tuned'
),
newest_sweep AS (
    SELECT sweep FROM fine_tuned ORDER BY model_created_at DESC, model_id DESC LIMIT 1
),
scored AS (
    SELECT f.*, l.result_id, l.test_snapshot, l.predictions,
           CASE CAST({{ metric }} AS TEXT)
               WHEN 'roc_auc' THEN l.roc_auc
               WHEN 'f1' THEN l.f1
               WHEN 'accuracy' THEN l.accuracy
               WHEN 'precision' THEN l.precision
               WHEN 'recall' THEN l.recall
           END AS metric_value
    FROM fine_tuned f
    LEFT JOIN latest l ON l.model_id = f.model_id AND l.nth = 1
),
/* Every model of the newest sweep, evaluated or not: a winner still waiting for its test result
   is the winner, and nothing is promoted until it has one. */
ranked AS (
    SELECT ROW_NUMBER() OVER (
               ORDER BY validation_value DESC NULLS LAST, val_loss ASC NULLS LAST, model_created_at ASC, model_id ASC
           ) AS rank,
           scored.*
    FROM scored
    WHERE sweep = (SELECT sweep FROM newest_sweep)
)
SELECT rank, CAST({{ metric }} AS TEXT) AS metric, model_id, result_id, test_snapshot, metric_value,
       validation_value, stage, sweep, predictions
FROM ranked
UNION ALL
SELECT NULL AS rank, CAST({{ metric }} AS TEXT) AS metric, model_id, result_id, test_snapshot, metric_value,
       validation_value, stage, sweep, predictions
FROM scored
WHERE stage = 'production' AND result_id IS NOT NULL AND model_id NOT IN (SELECT model_id FROM ranked)
