"""
### Retract an upload

By hand, or `make retract URI=... REASON=... [BY=...]`: takes back one misplaced file, e.g. a test
image dropped into train, which fails both quality gates as leakage. Give its `uri` as the gate's
failure message names it, a `reason` and who you are (`retracted_by`). Its `image_files` row is marked
retracted with who, why and when (never deleted), its bytes move to `quarantine/<split>/`, a note
saying why takes its place in `raw/`, and `mri://registry/images/{train,test}` are emitted, so both
gates run again without it. Retracting a file again changes nothing.

The Airflow DAG is built by a factory in `include/registry/dag.py`; the work is in `include/registry/retract.py`.
"""

from include.registry.dag import build_retract_dag

build_retract_dag(doc_md=__doc__)
