"""A run costs what is new, not what the history holds (issue 12): 100k file references go
through the preprocess DAG with every XCom a few kB, and a later run with 20 files moved by the
ingestion DAG lists, asks about and registers those 20 only."""

import pytest
from airflow.utils.state import DagRunState

from include.config import settings
from include.db import get_database
from include.ingestion.dag import build_ingestion_dag
from include.ingestion.mover import Outcome, pending_prefix, write_pending_manifest
from include.registry.dag import build_preprocess_dag
from include.storage import get_storage
from tests.support.files import jpeg
from tests.support.metadata import xcom_sizes, xcom_value

HISTORY = 100_000
XCOM_LIMIT = 50_000  # bytes per task instance, whatever the number of files


@pytest.fixture
def registry(duckdb_conn_id, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MRI_DB_CONN_ID", duckdb_conn_id)
    monkeypatch.setenv("MRI_STORAGE_ROOT", str(tmp_path / "storage"))
    settings.cache_clear()
    yield get_database(duckdb_conn_id), get_storage(), tmp_path / "storage"
    settings.cache_clear()


def test_100k_references_keep_xcom_bounded_and_20_new_files_cost_20(registry, capsys):
    db, storage, root = registry
    # The history: 100k distinct small files already in raw/ (a few bytes each: every one is
    # read, hashed and quarantined as undecodable, which is the real registration path).
    for folder in range(10):
        path = root / f"raw/train/site_{folder}"
        path.mkdir(parents=True)
        for i in range(folder, HISTORY, 10):
            (path / f"glioma ({i}).jpg").write_bytes(b"%d" % i)

    first = build_preprocess_dag("train", "t").test()

    assert first.state == DagRunState.SUCCESS
    assert db.fetch_all("SELECT COUNT(*) FROM image_files") == [(HISTORY,)]
    first_sizes = xcom_sizes(first.dag_id, first.run_id)
    assert first_sizes and max(first_sizes.values()) < XCOM_LIMIT, first_sizes
    assert xcom_value(first, "list_raw_files")["files"] == HISTORY

    # 20 new files through the mover: its pending manifest is all the next run reads.
    for i in range(20):
        storage.write(f"landing/train/meningioma ({i}).jpg", jpeg(i, side=64))
    assert build_ingestion_dag("train", "t").test().state == DagRunState.SUCCESS
    assert storage.list(pending_prefix("train"))

    second = build_preprocess_dag("train", "t").test()

    assert second.state == DagRunState.SUCCESS
    assert db.fetch_all("SELECT COUNT(*) FROM image_files") == [(HISTORY + 20,)]
    listed = xcom_value(second, "list_raw_files")
    assert (listed["files"], listed["reconcile"]) == (20, False)  # candidates asked about: the 20
    assert len(xcom_value(second, "plan_batches")) == 1
    second_sizes = xcom_sizes(second.dag_id, second.run_id)
    assert sum(second_sizes.values()) <= sum(first_sizes.values())
    assert max(second_sizes.values()) < 1_000, second_sizes
    assert storage.list(pending_prefix("train")) == []  # registered: the manifest is retired
    assert storage.list("registry_plan") == []
    with capsys.disabled():
        print(f"\nXCom bytes per task instance, {HISTORY:,} files: {sorted(first_sizes.items())}")
        print(f"XCom bytes per task instance, 20 new files: {sorted(second_sizes.items())}")


def test_files_a_failed_run_left_unregistered_come_back_in_the_next_run(registry, monkeypatch):
    """Issue 7, item 9, with manifests: a file that reached raw/ is registered eventually."""
    db, storage, _ = registry
    for i in range(3):
        storage.write(f"landing/train/glioma ({i}).jpg", jpeg(i, side=64))
    assert build_ingestion_dag("train", "t").test().state == DagRunState.SUCCESS
    monkeypatch.setenv("MRI_LABELS_CSV", "labels/missing.csv")  # plan_batches fails on it
    settings.cache_clear()

    assert build_preprocess_dag("train", "t").test().state == DagRunState.FAILED
    assert db.fetch_all("SELECT COUNT(*) FROM image_files") == [(0,)]
    assert storage.list(pending_prefix("train")), "a failed run must keep its manifests"

    monkeypatch.delenv("MRI_LABELS_CSV")
    settings.cache_clear()
    again = build_preprocess_dag("train", "t").test()

    assert again.state == DagRunState.SUCCESS
    assert xcom_value(again, "list_raw_files")["reconcile"] is False
    assert db.fetch_all("SELECT COUNT(*) FROM image_files") == [(3,)]
    assert storage.list(pending_prefix("train")) == []


def test_a_manifest_with_a_gone_file_makes_the_run_list_all_of_raw(registry):
    """A replayed move finds its file `gone`: where the earlier try put it is unknown, so the
    manifest asks for one full listing and the file is found."""
    db, storage, _ = registry
    storage.write("raw/train/glioma (1) (upload 0123456789ab).jpg", jpeg(1, side=64))  # the earlier try's copy
    write_pending_manifest(storage, "train", "run-1", 0, [Outcome("landing/train/glioma (1).jpg", "", "gone")])

    run = build_preprocess_dag("train", "t").test()

    assert run.state == DagRunState.SUCCESS
    assert xcom_value(run, "list_raw_files")["reconcile"] is True
    assert db.fetch_all("SELECT uri FROM image_files") == [
        (storage.uri("raw/train/glioma (1) (upload 0123456789ab).jpg"),)
    ]
