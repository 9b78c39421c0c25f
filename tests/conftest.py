"""Session-wide test setup: an isolated Airflow home and SQLite metadata DB, a real PostgreSQL.

The environment is set before anything imports Airflow, which reads its config at import time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="mri-airflow-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
        "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES": "airflow.* astro.*",
        "AIRFLOW_CONN_MRI_DB": f'{{"conn_type": "duckdb", "host": "{_AIRFLOW_HOME}/mri.duckdb"}}',
    }
)
for name in [n for n in os.environ if n.startswith("AIRFLOW_VAR_MRI_") or n.startswith("MRI_")]:
    del os.environ[name]
sys.path.insert(0, str(PROJECT_ROOT))

from tests.support.postgres import PostgresServer, running_postgres  # noqa: E402


def pytest_sessionstart(session: pytest.Session) -> None:
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """A real PostgreSQL 15 on 127.0.0.1, started once for the session and stopped at its end."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def duckdb_conn_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A connection to a fresh DuckDB file in the test's own folder."""
    monkeypatch.setenv("AIRFLOW_CONN_TEST_DUCKDB", f'{{"conn_type": "duckdb", "host": "{tmp_path}/registry.duckdb"}}')
    return "test_duckdb"


@pytest.fixture
def postgres_conn_id(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A connection to a fresh database on the session's PostgreSQL server."""
    import psycopg2

    name = f"t{os.urandom(6).hex()}"
    conn = psycopg2.connect(postgres_server.url)
    conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    conn.cursor().execute(f"CREATE DATABASE {name}")
    conn.close()
    monkeypatch.setenv("AIRFLOW_CONN_TEST_POSTGRES", postgres_server.airflow_conn().rsplit("/", 1)[0] + f"/{name}")
    return "test_postgres"


@pytest.fixture(params=["duckdb", "postgres"])
def db_conn_id(request: pytest.FixtureRequest) -> str:
    """Each backend in turn: the same test runs on DuckDB and on a real PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_conn_id")
