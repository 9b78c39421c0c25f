"""What prepares the registry: its pools (made at setup, outside any task), the migrations task
every DAG that uses the registry starts with, and the ``registry_setup`` DAG that runs only it.

A task in a missing pool is never scheduled (the DAG shows a "non-existent pool" warning), and
Airflow 3 lets no task create one: ``make migrate`` and the launcher call :func:`create_pools`.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile

from include.config import settings
from include.db import RegistryDatabase, get_database
from include.db.migrations import apply_migrations
from include.wiring.compat import DAG, task
from include.wiring.defaults import pipeline_dag

log = logging.getLogger(__name__)


def pools(db: RegistryDatabase) -> dict[str, dict]:
    """The pools the DAGs use, as ``airflow pools import`` reads them: the registry's sized for its
    backend (1 slot for an embedded file, many for a server), the training pool from the settings."""
    cfg = settings()
    return {
        cfg.db_pool: {
            "slots": db.pool_slots,
            "description": f"Tasks that open the registry database ({db.conn_type}, {db.pool_slots} at a time)",
            "include_deferred": False,
        },
        cfg.training_pool: {
            "slots": cfg.training_pool_slots,
            "description": "Fine-tune tasks: each takes every core it is given (MRI_TRAINING_POOL_SLOTS at a time)",
            "include_deferred": False,
        },
    }


def create_pools(db: RegistryDatabase) -> dict[str, dict]:
    """Create or resize :func:`pools` through Airflow's CLI, which both majors keep.

    Never from a task: Airflow 3 gives tasks no metadata database, so pools are made at setup
    (``make migrate``, the launcher, ``airflow_settings.yaml`` for ``astro dev start``).
    """
    wanted = pools(db)
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="mri-pools-") as spec:
        json.dump(wanted, spec)
        spec.flush()
        done = subprocess.run(
            [sys.executable, "-m", "airflow", "pools", "import", spec.name], capture_output=True, text=True
        )
    if done.returncode:
        raise RuntimeError(f"`airflow pools import` failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}")
    log.info("Pools: %s", ", ".join(f"{name} ({pool['slots']} slots)" for name, pool in wanted.items()))
    return wanted


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
        apply_db_migrations()

    return registry_setup()
