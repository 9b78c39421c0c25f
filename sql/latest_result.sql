/* The newest result of a model with the role on the test snapshot: the baselines' are what a
   fine-tuned model is put beside (test_fine_tuned_model) and must beat (deploy_best_model). */
SELECT r.*
FROM model_results r
JOIN models m ON m.model_id = r.model_id
WHERE m.role = {{ role }} AND r.test_snapshot = {{ test_snapshot }}
ORDER BY r.evaluated_at DESC, r.result_id DESC
LIMIT 1
