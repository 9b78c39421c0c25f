"""
### Registry setup

Sizes the registry pool for the backend behind `MRI_DB_CONN_ID` (DuckDB: 1 slot, Postgres: many)
and applies `migrations/`. Every DAG that writes the registry starts with the same two tasks, so
this DAG is only needed to prepare a new database by hand, e.g. after pointing
`AIRFLOW_VAR_MRI_DB_CONN_ID` at Postgres.
"""

from __future__ import annotations

from airflow.decorators import dag

from include.dag_defaults import DEFAULT_ARGS, START_DATE
from include.db.setup_tasks import apply_db_migrations, ensure_db_pool


@dag(
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    tags=["mri", "registry", "setup"],
)
def registry_setup():
    ensure_db_pool() >> apply_db_migrations()


registry_setup()
