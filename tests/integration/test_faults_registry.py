"""The registry under faults: labels of re-uploads, conflicting labels, folders, lock-order deadlocks,
locked files, missing settings, file names that are not UTF-8 (issue 7), on DuckDB and Postgres."""

import os
import subprocess
import sys
import threading
import time

import pytest
from airflow.utils.state import DagRunState, TaskInstanceState

from include.config import ConfigError, settings
from include.db import DatabaseUnavailableError, get_database
from include.db.base import checked_identifiers
from include.db.migrations import apply_migrations
from include.registry.dag import build_preprocess_dag
from include.registry.records import IMAGE_COLUMNS, read_label_overrides, write_records
from include.storage import StorageUnavailableError, get_storage

# registry is a fixture: imported so pytest finds it here, then named by each test (F401, F811).
from tests.integration.test_preprocess_dag import image_bytes, registry, use_labels_csv  # noqa: F401
from tests.support.concurrency import holding_duckdb_file
from tests.support.records import synthetic_records


def run_preprocess(split="train"):
    return build_preprocess_dag(split, "t").test()


def labels_by_file(db):
    return {uri.split("/raw/train/", 1)[1]: label for uri, label in db.fetch_all("SELECT uri, label FROM images")}


def test_labels_csv_names_files_by_landing_path_and_follows_fingerprinted_reuploads(registry, monkeypatch):  # noqa: F811
    db, storage = registry
    csv = b"file,label\nscan.jpg,pituitary\na/scan.jpg,glioma\nb/scan.jpg,meningioma\n"
    use_labels_csv(storage, monkeypatch, csv, labels="glioma,meningioma,pituitary")
    storage.write("raw/train/scan.jpg", image_bytes(1))
    storage.write("raw/train/scan (upload 0123456789ab).jpg", image_bytes(2))  # a re-upload of scan.jpg
    storage.write("raw/train/a/scan.jpg", image_bytes(3))
    storage.write("raw/train/b/scan.jpg", image_bytes(4))

    assert run_preprocess().state == DagRunState.SUCCESS

    assert labels_by_file(db) == {
        "scan.jpg": "pituitary",
        "scan (upload 0123456789ab).jpg": "pituitary",
        "a/scan.jpg": "glioma",
        "b/scan.jpg": "meningioma",
    }


def test_same_bytes_under_two_labels_is_a_recorded_conflict(registry):  # noqa: F811
    db, storage = registry
    storage.write("raw/train/glioma (1).jpg", image_bytes(1))
    storage.write("raw/train/meningioma (1).jpg", image_bytes(1))  # the same scan, labelled otherwise
    storage.write("raw/train/glioma (2).jpg", image_bytes(2))

    assert run_preprocess().state == DagRunState.SUCCESS

    [(labels, files)] = db.fetch_all("SELECT labels, files FROM label_conflicts")
    assert (labels, files) == (2, 2)


def test_folders_and_temp_files_under_raw_never_become_registry_rows(registry, tmp_path):  # noqa: F811
    db, storage = registry
    storage.write("raw/train/sub/glioma (1).jpg", image_bytes(1))
    (tmp_path / "storage/raw/train/empty").mkdir()
    # A cross-filesystem copy in progress: its private temp file is not a file to register.
    (tmp_path / "storage/raw/train/.glioma (2).jpg.k3x9.tmp").write_bytes(image_bytes(2)[:100])

    assert run_preprocess().state == DagRunState.SUCCESS

    rows = db.fetch_all("SELECT uri, status FROM images")
    assert rows == [(storage.uri("raw/train/sub/glioma (1).jpg"), "registered")]


def test_a_file_name_that_is_not_utf8_is_quarantined_not_a_failed_batch(registry, tmp_path):  # noqa: F811
    db, storage = registry
    storage.write("raw/train/glioma (1).jpg", image_bytes(1))
    with open(os.fsencode(tmp_path / "storage/raw/train") + b"/glioma (2) \xff.jpg", "wb") as f:
        f.write(image_bytes(2))

    assert run_preprocess().state == DagRunState.SUCCESS
    assert run_preprocess().state == DagRunState.SUCCESS  # and a re-run reads nothing twice

    rows = db.fetch_all("SELECT uri, status, reason FROM images")
    rows = {uri.rsplit("/", 1)[1]: (status, reason) for uri, status, reason in rows}
    assert rows["glioma (1).jpg"] == ("registered", None)
    assert rows["glioma (2) \\xff.jpg"][0] == "quarantined"
    assert rows["glioma (2) \\xff.jpg"][1].startswith("file name is not valid UTF-8")
    [(files,)] = db.fetch_all("SELECT COUNT(*) FROM image_files")
    assert files == 2


def test_writers_sharing_contents_in_opposite_order_do_not_deadlock(postgres_conn_id):
    import psycopg2

    db = get_database(postgres_conn_id)
    apply_migrations(db)
    shared = synthetic_records(0, 200)
    # The same 200 contents under other names: uri order is content order in one, the reverse in the other.
    forward = [r._replace(uri=f"s3://b/raw/train/a/{i:04d}.jpg") for i, r in enumerate(shared)]
    backward = [r._replace(uri=f"s3://b/raw/train/b/{i:04d}.jpg") for i, r in enumerate(reversed(shared))]
    # A third transaction holds the middle content, so both writers are provably mid-batch at once.
    blocker = psycopg2.connect(**_dsn(db))
    blocking = blocker.cursor()
    middle = shared[100]
    blocking.execute(
        f"INSERT INTO images ({', '.join(IMAGE_COLUMNS)}) VALUES ({', '.join(['%s'] * len(IMAGE_COLUMNS))})",
        tuple(middle),
    )
    errors = []

    def write(records, run_id):
        try:
            write_records(get_database(postgres_conn_id), records, run_id)
        except Exception as err:
            errors.append(err)

    writers = [threading.Thread(target=write, args=(rows, name)) for rows, name in ((forward, "a"), (backward, "b"))]
    for writer in writers:
        writer.start()
    waiting = 0
    for _ in range(600):
        [(waiting,)] = db.fetch_all(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        if waiting == 2:
            break
        time.sleep(0.05)
    blocker.rollback()
    blocker.close()
    for writer in writers:
        writer.join(timeout=120)

    assert waiting == 2, "the writers never waited on each other"
    assert errors == []
    [(images,)] = db.fetch_all("SELECT COUNT(*) FROM images")
    [(files,)] = db.fetch_all("SELECT COUNT(*) FROM image_files")
    assert (images, files) == (200, 400)


def _dsn(db) -> dict:
    c = db.connection
    return {"host": c.host, "port": c.port, "user": c.login, "password": c.password, "dbname": c.schema}


def test_a_duckdb_file_locked_by_another_process_names_that_process(duckdb_conn_id):
    db = get_database(duckdb_conn_id)
    with holding_duckdb_file(db.path) as holder, pytest.raises(DatabaseUnavailableError) as raised:
        db.fetch_all("SELECT 1")
    message = str(raised.value)
    assert f"another process holds the lock on the DuckDB file {db.path}" in message
    assert f"(PID {holder.pid})" in message
    assert "Start the database" not in message


def test_a_missing_labels_csv_fails_once_early_and_names_the_setting(registry, monkeypatch):  # noqa: F811
    db, storage = registry
    monkeypatch.setenv("MRI_LABELS_CSV", "missing.csv")
    settings.cache_clear()
    for i in range(1, 10):  # three batches of 4
        storage.write(f"raw/train/glioma ({i}).jpg", image_bytes(i))

    run = run_preprocess()

    assert run.state == DagRunState.FAILED
    plan = run.get_task_instance("plan_batches")
    # A configuration error fails for good on its first try: the retries it has are not spent.
    assert (plan.state, plan.try_number, plan.max_tries) == (TaskInstanceState.FAILED, 1, 3)
    register = [ti for ti in run.get_task_instances() if ti.task_id == "register_batch"]
    assert register and {ti.state for ti in register} == {TaskInstanceState.UPSTREAM_FAILED}
    with pytest.raises(ConfigError, match=r"MRI_LABELS_CSV 'missing.csv' is not in the storage"):
        read_label_overrides(storage, "missing.csv")


def test_an_undefined_storage_connection_names_the_setting(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_S3", raising=False)
    storage = get_storage("s3://bucket/mri", "no_such_s3")
    undefined = r"MRI_STORAGE_CONN_ID 'no_such_s3' is not a defined Airflow connection"
    with pytest.raises(StorageUnavailableError, match=undefined):
        storage.list("landing/train")


def test_sql_identifier_check_raises_even_under_python_optimize():
    with pytest.raises(ValueError, match="not plain SQL identifiers"):
        checked_identifiers("images", "uri; DROP TABLE images")
    optimized = subprocess.run(
        [sys.executable, "-O", "-c", "from include.db.base import checked_identifiers as c; c('x; DROP')"],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert optimized.returncode != 0 and "not plain SQL identifiers" in optimized.stderr
