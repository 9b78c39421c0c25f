"""The pools the DAGs run in, as Airflow has them after setup (`make migrate`, the launcher): the
registry's sized to its backend, read back from Airflow's own pools."""

from include.config import settings
from include.db import get_database
from include.wiring.setup import create_pools
from tests.support.metadata import pool_slots

# Slots of the registry pool per backend: one DuckDB writer at a time, parallel writers on Postgres.
REGISTRY_POOL_SLOTS = {"duckdb": 1, "postgres": 32}


def test_setup_makes_the_registry_pool_as_large_as_its_backend_allows_and_the_training_pool(db_conn_id, monkeypatch):
    monkeypatch.setenv("MRI_DB_POOL", f"registry_{db_conn_id}")
    monkeypatch.setenv("MRI_TRAINING_POOL", f"training_{db_conn_id}")
    monkeypatch.setenv("MRI_TRAINING_POOL_SLOTS", "2")
    settings.cache_clear()
    db = get_database(db_conn_id)

    create_pools(db)

    assert pool_slots(f"registry_{db_conn_id}") == REGISTRY_POOL_SLOTS[db.conn_type]
    assert pool_slots(f"training_{db_conn_id}") == 2
