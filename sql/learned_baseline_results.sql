/* How many results on the test snapshot the models of a role fitted on the train snapshot have
   (has_learned_baseline, include/training/records.py: test_baseline_model fits the learned baseline
   only for a pair of gated snapshots without one). One row, one count; the values are bound. */
SELECT COUNT(*)
FROM model_results r
JOIN models m ON m.model_id = r.model_id
WHERE m.role = {{ role }} AND m.train_snapshot = {{ train_snapshot }} AND r.test_snapshot = {{ test_snapshot }}
