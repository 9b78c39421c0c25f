"""
### Test baseline model

Runs when `quality_gate_test` passed (Dataset `mri://quality/passed/test`). Saves the base model
(`MRI_MODEL_SOURCE`) with a freshly initialised, untrained head as a `models` row with role
`baseline`, and evaluates it on the gated test snapshot with `EvaluateImageClassifierOperator`:
the reference every fine-tuned model is compared with (ROC AUC near 0.5). The result is appended
to `model_results` with its ROC curve and confusion matrix pictures.

The Airflow DAG is built by a factory in `include/training/dags.py`.
"""

from include.training.dags import build_test_baseline_dag

build_test_baseline_dag(doc_md=__doc__)
