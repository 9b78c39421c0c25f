"""The continuous ingestion DAGs, run with dag.test() on a local folder and on a real S3 endpoint."""

import json
import threading
import time

import pytest
from airflow.utils.state import DagRunState

from include.ingestion.dag import build_ingestion_dag
from include.ingestion.mover import batches, ingest_file, landing_prefix
from include.storage import StorageUnavailableError, get_storage
from tests.support.files import jpeg, keys


def run_dag(split):
    return build_ingestion_dag(split, doc_md="test").test()


@pytest.mark.parametrize("split", ["train", "test"])
def test_good_files_reach_raw_and_bad_files_quarantine_with_a_reason(storage_settings, split):
    storage = get_storage()
    for i in range(1, 4):
        storage.write(f"landing/{split}/glioma ({i}).jpg", jpeg(i))
    storage.write(f"landing/{split}/empty.jpg", b"")
    storage.write(f"landing/{split}/notes.jpg", b"radiology report, not a picture")
    # Not listed, so never moved: an upload in progress and a desktop's metadata file.
    storage.write(f"landing/{split}/glioma (4).jpg.part", b"half an upload")
    storage.write(f"landing/{split}/.DS_Store", b"finder metadata")
    # A re-upload whose name leaves no room for the fingerprint suffix under 255 bytes.
    long_name = "glioma (5) " + "x" * 230 + ".jpg"
    storage.write(f"raw/{split}/{long_name}", jpeg(50))
    storage.write(f"landing/{split}/{long_name}", jpeg(5))

    run = run_dag(split)

    assert run.state == DagRunState.SUCCESS
    assert keys(storage, f"landing/{split}") == []
    assert storage.exists(f"landing/{split}/glioma (4).jpg.part") and storage.exists(f"landing/{split}/.DS_Store")
    raw = keys(storage, f"raw/{split}")
    reupload = [k for k in raw if "(upload " in k]
    assert [k for k in raw if k not in reupload] == [f"raw/{split}/glioma ({i}).jpg" for i in range(1, 4)] + [
        f"raw/{split}/{long_name}"
    ]
    assert len(reupload) == 1 and len(reupload[0].rsplit("/", 1)[1].encode()) == 255
    assert storage.read(reupload[0]) == jpeg(5)
    assert keys(storage, f"quarantine/{split}") == [f"quarantine/{split}/empty.jpg", f"quarantine/{split}/notes.jpg"]
    [log_key] = keys(storage, f"ingest_log/{split}")
    reasons = {row["source"]: row["reason"] for row in map(json.loads, storage.read(log_key).decode().splitlines())}
    assert reasons[f"landing/{split}/empty.jpg"] == "empty file (0 bytes)"
    assert reasons[f"landing/{split}/notes.jpg"].startswith("not an image: starts with b'radiolog'")
    assert reasons[f"landing/{split}/glioma (1).jpg"] is None


def test_sensor_defers_until_files_land(storage_settings):
    storage = get_storage()
    threading.Timer(2.0, lambda: storage.write("landing/train/glioma (1).jpg", jpeg(1))).start()

    run = run_dag("train")

    assert run.state == DagRunState.SUCCESS
    assert keys(storage, "raw/train") == ["raw/train/glioma (1).jpg"]


def test_same_name_uploaded_twice_keeps_both_and_a_repeat_upload_is_a_duplicate(storage_settings):
    storage = get_storage()
    storage.write("landing/train/glioma (1).jpg", jpeg(1))
    run_dag("train")
    storage.write("landing/train/glioma (1).jpg", jpeg(2))
    run_dag("train")
    storage.write("landing/train/glioma (1).jpg", jpeg(1))
    run_dag("train")

    raw = keys(storage, "raw/train")
    assert len(raw) == 2 and raw[0] == "raw/train/glioma (1) (upload " + raw[0][len("raw/train/glioma (1) (upload ") :]
    assert sorted(storage.read(k) for k in raw) == sorted([jpeg(1), jpeg(2)])
    assert keys(storage, "landing/train") == []


def test_file_arriving_between_list_and_move_stays_in_landing(storage_settings):
    storage = get_storage()
    storage.write("landing/train/glioma (1).jpg", jpeg(1))
    [listed] = batches(keys(storage, landing_prefix("train")), 500)
    storage.write("landing/train/glioma (2).jpg", jpeg(2))  # arrives after the listing

    for key in listed:
        ingest_file(storage, key, "train")

    assert keys(storage, "landing/train") == ["landing/train/glioma (2).jpg"]
    assert keys(storage, "raw/train") == ["raw/train/glioma (1).jpg"]


def test_s3_endpoint_going_away_mid_move_loses_nothing(s3_root, s3_relay, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    storage = get_storage(s3_root, "test_s3")
    files = {f"landing/train/glioma ({i}).jpg": jpeg(i) for i in range(1, 61)}
    for key, data in files.items():
        storage.write(key, data)
    listed = keys(storage, "landing/train")

    def cut_after_some_moves():
        watcher = get_storage(s3_root, "test_s3")
        while len(watcher.list("raw/train")) < 5:
            time.sleep(0.01)
        s3_relay.cut()

    cutter = threading.Thread(target=cut_after_some_moves)
    cutter.start()
    with pytest.raises(StorageUnavailableError, match="unreachable.*files not yet copied stay in landing"):
        for key in listed:
            ingest_file(storage, key, "train")
    cutter.join()
    s3_relay.restore()

    after = get_storage(s3_root, "test_s3")
    landing, raw = set(keys(after, "landing/train")), set(keys(after, "raw/train"))
    assert 5 <= len(raw) < len(files)
    for key, data in files.items():
        moved = key.replace("landing/", "raw/", 1)
        assert key in landing or moved in raw, f"{key} was lost"
        if key not in landing:
            assert after.read(moved) == data
    # A retry finishes the job from what is still in landing.
    for key in sorted(landing):
        ingest_file(after, key, "train")
    assert keys(after, "landing/train") == [] and len(keys(after, "raw/train")) == len(files)


def test_files_a_batch_copied_before_it_failed_for_good_are_still_registered(
    s3_root, s3_relay, db_conn_id, monkeypatch
):
    from include.config import settings
    from include.db import get_database
    from include.registry.dag import build_preprocess_dag

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("MRI_STORAGE_ROOT", s3_root)
    monkeypatch.setenv("MRI_STORAGE_CONN_ID", "test_s3")
    monkeypatch.setenv("AIRFLOW_VAR_MRI_DB_CONN_ID", db_conn_id)
    settings.cache_clear()
    storage = get_storage()
    # Many files, cut after the first: the outage surely lands mid-batch, however fast the mover.
    for i in range(1, 151):
        storage.write(f"landing/train/glioma ({i}).jpg", jpeg(i))

    def cut_after_some_moves():
        watcher = get_storage()
        while not watcher.list("raw/train"):
            time.sleep(0.01)
        s3_relay.cut()

    outage = build_ingestion_dag("train", doc_md="test")
    outage.task_dict["move_batch"].partial_kwargs["retries"] = 0  # the outage outlasts every retry
    cutter = threading.Thread(target=cut_after_some_moves)
    cutter.start()
    assert outage.test().state == DagRunState.FAILED
    cutter.join()
    s3_relay.restore()
    copied_before_the_failure = {o.key for o in storage.list("raw/train")}
    # After the outage: one more upload, a normal run, and the registry run it announces.
    storage.write("landing/train/glioma (151).jpg", jpeg(151))
    assert run_dag("train").state == DagRunState.SUCCESS
    assert build_preprocess_dag("train", doc_md="test").test().state == DagRunState.SUCCESS

    registered = {storage.key(uri) for (uri,) in get_database().fetch_all("SELECT uri FROM image_files")}
    assert copied_before_the_failure and copied_before_the_failure <= registered
    # Every file registered once, whether the outage hit before, between or after its copy and delete.
    assert sorted(registered) == sorted(f"raw/train/glioma ({i}).jpg" for i in range(1, 152))
    settings.cache_clear()
