"""
### Registry setup

Sizes the registry pool for the backend behind `MRI_DB_CONN_ID` (DuckDB: 1 slot, Postgres: many)
and applies `migrations/`. Every DAG that writes the registry starts with the same two tasks, so
this DAG is only needed to prepare a new database by hand, e.g. after pointing
`AIRFLOW_VAR_MRI_DB_CONN_ID` at Postgres.
"""

from include.wiring.setup import build_registry_setup_dag

build_registry_setup_dag(doc_md=__doc__)
