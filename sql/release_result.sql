/* The evaluation a release is promoted on (deploy_best_model, include/deploy/assemble.py); the
   confusion matrix as JSON text on both backends. */
SELECT *, CAST(confusion_matrix AS TEXT) AS confusion_matrix_json
FROM model_results
WHERE result_id = {{ result_id }}
