"""
### Quality gate: test

Runs when `preprocess_test_data` committed rows (`mri://registry/images/test`). Validates the
split's snapshot (the SHA-256 of its sorted content hash + label pairs) with Great Expectations:
schema and non-null keys, unique content hash, labels in `MRI_LABELS`, at least
`MRI_QUALITY_MIN_IMAGES_PER_CLASS` per class, class balance, width/height/mode, quarantine rate,
no pixels in both splits or under two labels, no near-duplicate across splits
(`make retract` takes a misplaced upload back). Every run is a `quality_runs` row and a
Data Docs page (index under `MRI_QUALITY_DIR`). A pass freezes the snapshot and emits
`mri://quality/passed/test`, which evaluation follows; a failure names each failed expectation
with its observed value, notifies, emits nothing and is not retried.

The DAG is built by a shared factory in `include/quality/dag.py`, one Airflow DAG per split.
"""

from include.quality.dag import build_quality_gate_dag

build_quality_gate_dag("test", doc_md=__doc__)
