/* Fine-tuned models with no result on the test snapshot yet, oldest first (test_fine_tuned_model).
   A result written before migration 0009 has no per-image predictions, which a promotion compares
   two models on: such a model is evaluated again, once. */
SELECT model_id
FROM models
WHERE role = 'fine_tuned'
  AND model_id NOT IN (
      SELECT model_id FROM model_results WHERE test_snapshot = {{ test_snapshot }} AND predictions IS NOT NULL
  )
ORDER BY created_at, model_id
