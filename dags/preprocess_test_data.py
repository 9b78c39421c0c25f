"""
### Preprocess test data

Runs when `in_new_test_data` moved files to `raw/test/`: reads the mover's pending manifests (a
manual run lists all of `raw/test/`), then registers the files not registered yet in mapped
batches of `MRI_REGISTER_BATCH_SIZE` (default: the backend's), file lists passed by reference:
each is decoded, measured, hashed (SHA-256) and labelled, or
quarantined with its reason, and each batch is written in one transaction to the registry behind
`MRI_DB_CONN_ID` (DuckDB or Postgres). An `aql.transform` summary follows; the `images/test`
Dataset is emitted only after every batch has committed.

The DAG is built by a shared factory in `include/`, one Airflow DAG per split.
"""

from include.registry.dag import build_preprocess_dag

build_preprocess_dag("test", doc_md=__doc__)
