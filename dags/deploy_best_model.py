"""
### Deploy the best model

Runs when `test_fine_tuned_model` recorded results (the `model_evaluated` Dataset).

1. `pick_best_model` (`aql.transform` of `sql/pick_best_model.sql`, on `MRI_DB_CONN_ID`): ranks the
   fine-tuned models evaluated on the latest gated test snapshot by `MRI_SELECTION_METRIC`
   (default ROC AUC; ties: F1, then the older model), each with its latest result there.
2. `decide` (`aql.dataframe`): promote only if the winner beats the production model on the same
   snapshot by more than `MRI_PROMOTION_MARGIN`; otherwise a `promotions` row and a log line say why.
3. `promote`: the `models` stages change in one transaction, and the serving bundle (weights,
   processor config, label map, metrics, model card with the ROC curve) is written to a new
   release folder and served by swapping the `<MRI_PRODUCTION_DIR>/current` symlink just before
   the commit: registry and bundle change together or not at all. Emits `model_deployed`.
4. `aql.cleanup` drops the ranking table (a teardown).

The Airflow DAG is built by a factory in `include/deploy/dag.py`; the stage is the
`include/deploy/` package (decision, releases, promotion).
"""

from include.deploy.dag import build_deploy_dag

build_deploy_dag(doc_md=__doc__)
