"""The scale profile: CeleryExecutor with a Redis broker and two Celery worker processes, Airflow's
metadata and the registry on PostgreSQL, images in S3 (moto's server over HTTP). The same DAGs and
the same demo as ``make demo``; only the environment (``launcher.scale_profile``) differs."""

import os
import subprocess
import sys

import psycopg2

from launcher.phantom import PhantomConfig
from launcher.scale_profile import create_bucket, create_database, migrate_metadata, scale_environment
from tests.support.concurrency import most_at_once
from tests.support.redis import running_redis


def test_demo_on_celery_runs_mapped_register_batches_on_both_workers_at_once(postgres_server, s3_endpoint, tmp_path):
    # Databases of their own on the session's server: other tests use its `mri` database.
    meta_url = create_database(postgres_server, "celery_meta")
    registry_url = create_database(postgres_server, "celery_registry")
    bucket = f"mri-{os.urandom(4).hex()}"
    create_bucket(s3_endpoint, bucket)
    with running_redis() as redis_url:
        profile = scale_environment(tmp_path / "airflow", meta_url, registry_url, redis_url, s3_endpoint, bucket)
        env = {**os.environ, **profile, "MRI_REGISTER_BATCH_SIZE": "3", "MRI_SENSOR_POKE_SECONDS": "2"}
        migrate_metadata(env)
        demo = subprocess.run(
            [sys.executable, "-m", "launcher.demo", "--per-class", "12", "--phantom-dir", str(tmp_path / "phantom")]
            + ["--until", "registry", "--summary", str(tmp_path / "summary.json"), "--timeout", "600"],
            env=env,
            capture_output=True,
            text=True,
        )

    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    with psycopg2.connect(registry_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT split, COUNT(*) FROM images WHERE status = 'registered' GROUP BY split ORDER BY split")
        # The demo's phantom at 12 per class: 3 subjects a class, the last (2 slices) in test.
        phantom = PhantomConfig(per_class=12)
        train, test = 2 * phantom.train_count, 2 * (phantom.per_class - phantom.train_count)
        assert cur.fetchall() == [("test", test), ("train", train)]
        cur.execute("SELECT uri FROM image_files")
        uris = [uri for (uri,) in cur.fetchall()]
    assert len(uris) >= train + test and all(uri.startswith(f"s3://{bucket}/mri/raw/") for uri in uris), uris
    with psycopg2.connect(meta_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT hostname, start_date, end_date FROM task_instance "
            "WHERE dag_id LIKE 'preprocess_%' AND task_id = 'register_batch' AND state = 'success'"
        )
        rows = cur.fetchall()
    # 20 train and 4 test images (plus the demo's stray files) in batches of 3: several batches each.
    hosts = {hostname for hostname, _, _ in rows}
    assert len(rows) >= 8 and len(hosts) == 2 and all(host.startswith("worker") for host in hosts), rows
    assert most_at_once([(start.timestamp(), end.timestamp()) for _, start, end in rows]) >= 2
