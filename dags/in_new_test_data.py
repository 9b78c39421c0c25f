"""
### New test data

Continuous: a deferrable sensor waits for files in `landing/test/` of the image store
(`MRI_STORAGE_ROOT`: a local folder or `s3://`), then moves exactly the files listed at that
moment to `raw/test/` in mapped batches of `MRI_MOVE_BATCH_SIZE`. Non-images go to
`quarantine/test/` with a reason; every file's outcome is written to
`ingest_log/test/<run>/`. Emits the `raw/test` Dataset the preprocess DAG listens to.

The DAG is built by a shared factory in `include/`, one Airflow DAG per split.
"""

from include.ingestion.dag import build_ingestion_dag

build_ingestion_dag("test", doc_md=__doc__)
