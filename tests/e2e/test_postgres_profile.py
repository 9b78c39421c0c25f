"""The Postgres profile: Airflow's metadata and the registry on a real PostgreSQL, LocalExecutor with
parallelism 4. The same DAGs, one variable changed, and the mapped writers really run at once.

In the 3.3 session only: on 2.11 the Celery profile (tests/e2e/test_celery_profile.py) runs the
same Postgres metadata and registry with concurrent mapped writers, and CI's budget is 45 minutes
for both majors (the 2.11 session, which also runs the moving-up test, is the longer one)."""

import os
import subprocess
import sys

import psycopg2
import pytest

from launcher.phantom import PhantomConfig
from tests.support.concurrency import most_at_once


@pytest.mark.airflow_session(
    "3", reason="on 2.11 the Celery profile runs the same Postgres metadata and registry with concurrent writers"
)
def test_demo_on_postgres_runs_mapped_register_batches_concurrently(postgres_server, tmp_path):
    meta_url = postgres_server.url.rsplit("/", 1)[0] + "/airflow_meta"
    admin = psycopg2.connect(postgres_server.url)
    admin.autocommit = True
    admin.cursor().execute("CREATE DATABASE airflow_meta")
    admin.close()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url.replace("postgresql://", "postgresql+psycopg2://"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW_CONN_MRI_PG": postgres_server.airflow_conn(),
        "AIRFLOW_VAR_MRI_DB_CONN_ID": "mri_pg",  # the one variable
        "MRI_STORAGE_ROOT": str(tmp_path / "storage"),
        "MRI_REGISTER_BATCH_SIZE": "3",
        "MRI_SENSOR_POKE_SECONDS": "2",
    }
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)

    demo = subprocess.run(
        [
            sys.executable,
            "-m",
            "launcher.demo",
            "--per-class",
            "12",
            "--phantom-dir",
            str(tmp_path / "phantom"),
            "--timeout",
            "600",
            "--until",
            "registry",
            "--summary",
            str(tmp_path / "summary.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )

    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "Summary written to" in demo.stdout
    with psycopg2.connect(postgres_server.url) as conn, conn.cursor() as cur:
        cur.execute("SELECT split, COUNT(*) FROM images WHERE status = 'registered' GROUP BY split ORDER BY split")
        # The demo's phantom at 12 per class: 3 subjects a class, the last (2 slices) in test.
        phantom = PhantomConfig(per_class=12)
        train, test = 2 * phantom.train_count, 2 * (phantom.per_class - phantom.train_count)
        assert cur.fetchall() == [("test", test), ("train", train)]
    with psycopg2.connect(meta_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT start_date, end_date, pool FROM task_instance "
            "WHERE dag_id = 'preprocess_train_data' AND task_id = 'register_batch'"
        )
        rows = cur.fetchall()
    # 20 files in batches of 3; a second run may register files that arrived while the first ran.
    assert len(rows) >= 6 and {pool for _, _, pool in rows} == {"mri_db"}
    assert most_at_once([(start.timestamp(), end.timestamp()) for start, end, _ in rows]) >= 2
