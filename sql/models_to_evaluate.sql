/* Fine-tuned models with no result on the test snapshot yet, oldest first (test_fine_tuned_model). */
SELECT model_id
FROM models
WHERE role = 'fine_tuned'
  AND model_id NOT IN (SELECT model_id FROM model_results WHERE test_snapshot = {{ test_snapshot }})
ORDER BY created_at, model_id
