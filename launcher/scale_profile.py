"""``python -m launcher.scale_profile`` (``make demo-scale``): the demo on the scale profile, on one machine.

The same DAGs as ``make demo``; only the environment changes. It starts, in throwaway folders,
a PostgreSQL 15 (Airflow's metadata and the registry, ``MRI_DB_CONN_ID=mri_pg``), a Redis (the
Celery broker) and moto's S3 server (the image store, over HTTP), then runs ``python -m
launcher.demo`` with the CeleryExecutor: the scheduler, the triggerer (on Airflow 3 also the
api-server and the dag-processor, see ``launcher.services``) and ``MRI_CELERY_WORKERS`` Celery
workers are separate processes. When the demo returns, every server is stopped; the
Airflow home (logs of the scheduler, the workers and every task) stays in ``data/scale/``.
Arguments it does not know are passed to the demo (``--per-class 50``, ``--timeout 900``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from include.config import DATA_DIR, PROJECT_ROOT
from launcher.servers import (
    INSTALL_HINT,
    PG_BIN,
    REDIS_SERVER,
    PostgresServer,
    running_postgres,
    running_redis,
    running_s3_server,
    without_password,
)

log = logging.getLogger("launcher.scale_profile")

# moto accepts any credentials; these are not secrets.
MOTO_KEY = "testing"
# Celery pool processes per worker: each is a full Python with Airflow imported (~150 MB), and the
# default (16) would start 32 of them on a small machine; the executor's parallelism caps the rest.
WORKER_CONCURRENCY = "2"
# What the Makefile exports for every target; here too, so `python -m launcher.scale_profile` run
# from a plain shell finds the project's DAGs in its fresh Airflow home (the environment wins).
PROJECT_AIRFLOW = {
    "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
    "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES": "airflow.* astro.*",
}


def create_database(postgres: PostgresServer, name: str) -> str:
    """Create database ``name`` on ``postgres`` (a code constant or test-made name); return its URL."""
    import psycopg2
    from psycopg2 import sql

    admin = psycopg2.connect(postgres.url)
    admin.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    try:
        admin.cursor().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        admin.close()
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


def create_bucket(s3_endpoint: str, bucket: str) -> None:
    import boto3

    credentials = {"aws_access_key_id": MOTO_KEY, "aws_secret_access_key": MOTO_KEY}
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **credentials).create_bucket(Bucket=bucket)


def scale_environment(
    airflow_home: Path, meta_url: str, registry_url: str, redis_url: str, s3_endpoint: str, bucket: str
) -> dict[str, str]:
    """The environment of the scale profile: what differs from ``make demo``, nothing else.

    :param airflow_home: the profile's own Airflow home (config, logs).
    :param meta_url: ``postgresql://`` URL of an empty database for Airflow's metadata.
    :param registry_url: ``postgresql://`` URL of the registry database (connection ``mri_pg``).
    :param redis_url: the Celery broker.
    :param s3_endpoint: the S3 API endpoint of the image store.
    :param bucket: an existing bucket there; images go under ``s3://<bucket>/mri``.
    """
    meta_sqlalchemy = meta_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    s3_extra = {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_sqlalchemy,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": redis_url,
        # Task states come back through the metadata database, not through the broker.
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + meta_url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": os.environ.get(
            "AIRFLOW__CELERY__WORKER_CONCURRENCY", WORKER_CONCURRENCY
        ),
        "AIRFLOW_CONN_MRI_PG": registry_url.replace("postgresql://", "postgres://", 1),
        "AIRFLOW_VAR_MRI_DB_CONN_ID": "mri_pg",
        "AIRFLOW_CONN_MRI_S3": json.dumps(
            {"conn_type": "aws", "login": MOTO_KEY, "password": MOTO_KEY, "extra": s3_extra}
        ),
        "AIRFLOW_VAR_MRI_STORAGE_ROOT": f"s3://{bucket}/mri",
        "AIRFLOW_VAR_MRI_STORAGE_CONN_ID": "mri_s3",
        # Its own models, production bundle, reports and notifications: `make demo`'s stay untouched.
        **{
            f"AIRFLOW_VAR_MRI_{name.upper()}_DIR": str(airflow_home / "data" / name)
            for name in ("models", "production", "evaluations", "quality", "notifications")
        },
    }


def migrate_metadata(env: dict[str, str]) -> None:
    """``airflow db migrate`` on the profile's metadata database."""
    result = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        output = result.stdout[-3000:] + result.stderr[-3000:]
        raise RuntimeError(f"airflow db migrate failed ({result.returncode}):\n{output}")


def missing_servers() -> list[str]:
    """The server binaries the profile needs that this machine lacks."""
    needed = {"PostgreSQL 15 (initdb)": PG_BIN / "initdb", "redis-server": REDIS_SERVER}
    return [f"{name} at {path}" for name, path in needed.items() if not path.exists()]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.scale_profile", description=__doc__)
    parser.add_argument("--home", type=Path, default=DATA_DIR / "scale", help="Airflow home (emptied first)")
    args, demo_args = parser.parse_known_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if missing := missing_servers():
        log.error("The scale profile starts its own servers; missing: %s. Install them: `%s`.", missing, INSTALL_HINT)
        return 2
    shutil.rmtree(args.home, ignore_errors=True)
    args.home.mkdir(parents=True)
    with ExitStack() as servers:
        postgres = servers.enter_context(running_postgres())
        redis_url = servers.enter_context(running_redis())
        s3_endpoint = servers.enter_context(running_s3_server())
        create_bucket(s3_endpoint, "mri")
        meta_url = create_database(postgres, "airflow_meta")
        profile = scale_environment(args.home, meta_url, postgres.url, redis_url, s3_endpoint, "mri")
        env = {**PROJECT_AIRFLOW, **os.environ, **profile}
        log.info(
            "PostgreSQL %s, Redis %s, S3 %s; migrating the metadata",
            without_password(postgres.url),
            without_password(redis_url),
            s3_endpoint,
        )
        migrate_metadata(env)
        # The embedded demo's summary (reports/) stays the embedded demo's: this one goes with its logs.
        if not any(arg.startswith("--summary") for arg in demo_args):
            demo_args += ["--summary", str(args.home / "demo_summary.json")]
        demo = subprocess.run([sys.executable, "-m", "launcher.demo", *demo_args], env=env)
    log.info("Servers stopped. Logs of the scheduler, the workers and each task: %s", args.home)
    return demo.returncode


if __name__ == "__main__":
    sys.exit(main())
