"""The two tasks that prepare the registry at the start of every DAG that uses it, and the
``registry_setup`` DAG that runs only them.

``ensure_db_pool`` runs outside the pool (a task in a missing pool is never scheduled) and sizes
it for the backend; ``apply_db_migrations`` then opens the database inside the pool.
"""

from __future__ import annotations

import logging

from include.config import settings
from include.db import RegistryDatabase, get_database
from include.db.migrations import apply_migrations
from include.wiring.compat import DAG, task
from include.wiring.defaults import pipeline_dag

log = logging.getLogger(__name__)


def size_pool(db: RegistryDatabase, pool_name: str) -> None:
    """Create or resize ``pool_name`` to the backend's ``pool_slots``.

    :param db: the registry database.
    :param pool_name: the pool every registry task runs in.
    """
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(
        name=pool_name,
        slots=db.pool_slots,
        description=f"Tasks that open the registry database ({db.conn_type}, {db.pool_slots} at a time)",
        include_deferred=False,
    )
    log.info("Pool %s has %s slots for %r", pool_name, db.pool_slots, db)


@task(multiple_outputs=False)
def ensure_db_pool() -> dict:
    """Create or resize the registry pool: 1 slot for an embedded file, many for a server."""
    db = get_database()
    size_pool(db, settings().db_pool)
    return {"pool": settings().db_pool, "slots": db.pool_slots, "backend": db.conn_type}


@task(pool=settings().db_pool)
def apply_db_migrations() -> list[int]:
    """Bring the registry schema to the newest migration; a no-op when it is current."""
    db = get_database()
    applied = apply_migrations(db)
    log.info("Schema of %r is current; applied now: %s", db, applied or "none")
    return applied


def build_registry_setup_dag(doc_md: str) -> DAG:
    """The by-hand DAG that prepares a new registry database: pool, then migrations."""

    @pipeline_dag("registry_setup", None, doc_md, ["registry", "setup"])
    def registry_setup():
        ensure_db_pool() >> apply_db_migrations()

    return registry_setup()
