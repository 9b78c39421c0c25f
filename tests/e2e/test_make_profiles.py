"""The Makefile as a user drives it: one checkout, the default profile first, then the Postgres
profile; and the project's own `airflow` at hand."""

import os
import subprocess

import psycopg2

from include.config import PROJECT_ROOT


def make(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(PROJECT_ROOT), *args], env=env, capture_output=True, text=True)


def test_switching_to_the_postgres_profile_migrates_its_metadata_db(postgres_server, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")} | {"AIRFLOW_HOME": str(tmp_path)}
    assert make("airflow-db", env=env).returncode == 0
    assert (tmp_path / "airflow.db").exists()

    meta_url = postgres_server.url.rsplit("/", 1)[0] + "/switched_meta"
    admin = psycopg2.connect(postgres_server.url)
    admin.autocommit = True
    admin.cursor().execute("CREATE DATABASE switched_meta")
    admin.close()
    postgres_env = env | {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url.replace("postgresql://", "postgresql+psycopg2://")
    }
    switched = make("airflow-db", env=postgres_env)

    assert switched.returncode == 0, switched.stderr[-2000:]
    with psycopg2.connect(meta_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pool FROM slot_pool")
        assert ("default_pool",) in cur.fetchall()


def test_make_airflow_runs_against_the_project_dags_without_examples(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")} | {"AIRFLOW_HOME": str(tmp_path)}

    listed = make("airflow", "ARGS=dags list -o plain", env=env)

    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "preprocess_train_data" in listed.stdout
    assert "tutorial" not in listed.stdout


def test_make_airflow_runs_the_airflow_of_each_profile(tmp_path):
    """`make airflow ARGS=version` is 2.11.2 (the default) and `AIRFLOW=3` is 3.3.2, each installing
    and migrating its own venv and Airflow home when missing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    for profile, version in (("2", "2.11.2"), ("3", "3.3.2")):
        home = tmp_path / f"airflow-{profile}"
        printed = make("airflow", f"AIRFLOW={profile}", "ARGS=version", env=env | {"AIRFLOW_HOME": str(home)})
        assert printed.returncode == 0, printed.stderr[-2000:]
        assert version in printed.stdout.splitlines(), printed.stdout[-2000:]


def test_an_unknown_airflow_profile_names_the_two_there_are():
    refused = make("airflow", "AIRFLOW=4", "ARGS=version", env=dict(os.environ))
    assert refused.returncode != 0
    assert "AIRFLOW=4: use AIRFLOW=2 (2.11.2 with the Astro SDK, the default) or AIRFLOW=3 (3.3.2)" in refused.stderr
