/* The newest result on the test snapshot of a model the demo's summary reports (launcher/summary.py):
   the newest of a role (the untrained and the learned baseline; the fine-tuned one while none is in
   production), or of one model (production's). One of role and model_id is given, the other is NULL
   and matches nothing. With the interval bounds of its ROC AUC and accuracy, and the validation ROC
   AUC its sweep chose it by (NULL for a baseline). The values are bound. */
SELECT r.model_id, r.roc_auc, r.accuracy, r.f1, r.loss, r.balanced_accuracy, r.brier, r.roc_auc_low,
       r.roc_auc_high, r.accuracy_low, r.accuracy_high, m.val_roc_auc, r.roc_png
FROM model_results r
JOIN models m ON m.model_id = r.model_id
WHERE (m.role = {{ role }} OR m.model_id = {{ model_id }}) AND r.test_snapshot = {{ test_snapshot }}
ORDER BY r.evaluated_at DESC, r.result_id DESC
LIMIT 1
