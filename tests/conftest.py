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
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
        "AIRFLOW_CONN_MRI_DB": f'{{"conn_type": "duckdb", "host": "{_AIRFLOW_HOME}/mri.duckdb"}}',
    }
)
for name in [n for n in os.environ if n.startswith("AIRFLOW_VAR_MRI_") or n.startswith("MRI_")]:
    del os.environ[name]
sys.path.insert(0, str(PROJECT_ROOT))

from tests.support.postgres import PostgresServer, running_postgres  # noqa: E402
from tests.support.s3 import Relay, running_s3_server  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def airflow_metadata_db() -> Path:
    """The SQLite metadata DB of the test session's Airflow home, created once."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )
    return _AIRFLOW_HOME / "airflow.db"


@pytest.fixture(autouse=True)
def settings_read_afresh():
    """Every test reads the settings of its own environment: the cached settings are cleared before
    it and, in teardown (so also after a failure), once its environment is restored."""
    from include.config import settings

    settings.cache_clear()
    yield
    settings.cache_clear()


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


# moto accepts any credentials; these are not secrets.
MOTO_KEY = "testing"


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """moto's S3 server in its own process on 127.0.0.1, for the session."""
    with running_s3_server() as url:
        yield url


@pytest.fixture
def s3_relay(s3_endpoint: str) -> Relay:
    """A relay in front of the S3 endpoint that a test can cut, as if the service went away."""
    relay = Relay(int(s3_endpoint.rsplit(":", 1)[1]))
    yield relay
    relay.close()


@pytest.fixture
def s3_root(s3_relay: Relay, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket reached through the relay via the `aws` connection `test_s3`; returns its root."""
    import boto3

    bucket = f"mri-{os.urandom(4).hex()}"
    boto3.client(
        "s3",
        endpoint_url=s3_relay.url,
        region_name="us-east-1",
        aws_access_key_id=MOTO_KEY,
        aws_secret_access_key=MOTO_KEY,
    ).create_bucket(Bucket=bucket)
    extra = f'"endpoint_url": "{s3_relay.url}", "region_name": "us-east-1"'
    monkeypatch.setenv(
        "AIRFLOW_CONN_TEST_S3",
        f'{{"conn_type": "aws", "login": "{MOTO_KEY}", "password": "{MOTO_KEY}", "extra": {{{extra}}}}}',
    )
    return f"s3://{bucket}/mri"


@pytest.fixture(params=["local", "s3"])
def storage_settings(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Each kind of image store in turn, configured through MRI_STORAGE_ROOT/_CONN_ID only."""
    from include.config import settings

    if request.param == "local":
        monkeypatch.setenv("MRI_STORAGE_ROOT", str(tmp_path / "storage"))
    else:
        monkeypatch.setenv("MRI_STORAGE_ROOT", request.getfixturevalue("s3_root"))
        monkeypatch.setenv("MRI_STORAGE_CONN_ID", "test_s3")
    monkeypatch.setenv("MRI_SENSOR_POKE_SECONDS", "1")
    settings.cache_clear()
    return settings()


# A test of tests/e2e/ runs the demo (a real scheduler, up to twice): ~10 minutes on 2 cores, its own
# timeout 30 minutes. Its limit here is above that, so the demo's own message comes first.
E2E_TIMEOUT_SECONDS = 3600


def pytest_itemcollected(item: pytest.Item) -> None:
    """The tests of tests/e2e/ get E2E_TIMEOUT_SECONDS instead of pytest.ini's `timeout`, unless they set one."""
    if (PROJECT_ROOT / "tests" / "e2e") in Path(item.path).parents and not item.get_closest_marker("timeout"):
        item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_SECONDS))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``airflow_session(major)`` runs in that major's session and is reported skipped,
    with why, in the other."""
    from include.wiring.compat import AIRFLOW_V_3_0_PLUS

    running = "3" if AIRFLOW_V_3_0_PLUS else "2"
    for item in items:
        marker = item.get_closest_marker("airflow_session")
        if marker and marker.args[0] != running:
            why = marker.kwargs.get("reason", "it drives both majors through make")
            reason = f"runs in the Airflow {marker.args[0]} session only: {why}"
            item.add_marker(pytest.mark.skip(reason=reason))
