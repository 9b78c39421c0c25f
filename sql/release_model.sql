/* The models row of the model a release is built from (deploy_best_model, include/deploy/assemble.py). */
SELECT model_id, base_model, CAST(hyperparameters AS TEXT) AS hyperparameters, train_snapshot, path, created_at
FROM models
WHERE model_id = {{ model_id }}
