"""
### Test fine-tuned model

Runs when a model was trained (`mri://registry/models/trained`) or the test gate passed
(`mri://quality/passed/test`). Evaluates every fine-tuned model that has no result on the latest
gated test snapshot yet (mapped `EvaluateImageClassifierOperator`), appends one `model_results`
row each (loss, accuracy, precision, recall, F1, ROC AUC on probabilities, confusion matrix, ROC
and confusion PNGs), and emits `mri://registry/model_results` after every row committed. The
success notification puts each model's metrics beside the baseline's on the same snapshot.

The Airflow DAG is built by a factory in `include/training/dags.py`.
"""

from include.training.dags import build_test_fine_tuned_dag

build_test_fine_tuned_dag(doc_md=__doc__)
