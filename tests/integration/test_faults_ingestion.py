"""Ingestion under faults: replayed retries, poison files, uploads racing the mover, FIFOs, crashes.

Each test reproduces one way a hostile reviewer broke the promises of the README (issue 7) on the
real stores: a local folder and moto's S3 server over HTTP.
"""

import asyncio
import json
import os
import tempfile
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.exceptions import TaskDeferred
from airflow.utils.state import DagRunState, TaskInstanceState

from include.config import settings
from include.ingestion.dag import build_ingestion_dag
from include.ingestion.mover import ingest_file
from include.storage import get_storage
from tests.support.files import jpeg, keys


def log_rows(storage, split="train"):
    rows = []
    for key in keys(storage, f"ingest_log/{split}"):
        rows += [json.loads(line) for line in storage.read(key).decode().splitlines()]
    return rows


def run_dag(split="train"):
    return build_ingestion_dag(split, doc_md="test").test()


def test_a_replayed_batch_skips_the_files_an_earlier_try_already_moved(storage_settings):
    storage = get_storage()
    for i in range(1, 4):
        storage.write(f"landing/train/glioma ({i}).jpg", jpeg(i))
    listed = keys(storage, "landing/train")
    ingest_file(storage, listed[0], "train")  # the failed try got this far

    outcomes = [ingest_file(storage, key, "train") for key in listed]  # Airflow's retry replays the same keys

    assert [o.outcome for o in outcomes] == ["gone", "moved", "moved"]
    assert keys(storage, "raw/train") == [k.replace("landing/", "raw/", 1) for k in listed]
    assert keys(storage, "landing/train") == []


def test_a_poison_file_fails_alone_then_is_quarantined_after_the_attempts_run_out(tmp_path, monkeypatch):
    """Local folder: a destination that can never be created (raw/train/sub is a file)."""
    monkeypatch.setenv("MRI_STORAGE_ROOT", str(tmp_path / "storage"))
    monkeypatch.setenv("MRI_INGEST_ATTEMPTS", "2")
    settings.cache_clear()
    storage = get_storage()
    storage.write("raw/train/sub", b"a file where the mover needs a folder")
    storage.write("landing/train/glioma (1).jpg", jpeg(1))
    storage.write("landing/train/sub/glioma (2).jpg", jpeg(2))  # sorted between two good files
    storage.write("landing/train/tumor/glioma (3).jpg", jpeg(3))

    first = run_dag()

    assert first.state == DagRunState.SUCCESS
    assert keys(storage, "raw/train") == ["raw/train/glioma (1).jpg", "raw/train/sub", "raw/train/tumor/glioma (3).jpg"]
    assert keys(storage, "landing/train") == ["landing/train/sub/glioma (2).jpg"]
    [failed] = [row for row in log_rows(storage) if row["outcome"] == "failed"]
    assert failed["source"] == "landing/train/sub/glioma (2).jpg"
    assert failed["reason"].startswith("attempt 1 of 2 (MRI_INGEST_ATTEMPTS) failed: FileExistsError")

    assert run_dag().state == DagRunState.SUCCESS

    assert keys(storage, "landing/train") == []
    assert keys(storage, "quarantine/train") == ["quarantine/train/sub/glioma (2).jpg"]
    assert storage.read("quarantine/train/sub/glioma (2).jpg") == jpeg(2)
    [quarantined] = [row for row in log_rows(storage) if row["outcome"] == "quarantined"]
    assert quarantined["reason"].startswith("failed 2 times (MRI_INGEST_ATTEMPTS): FileExistsError")
    settings.cache_clear()


def test_an_unreadable_s3_object_is_parked_and_stops_waking_the_sensor(s3_root, monkeypatch):
    """S3: an object in an archive tier can be neither read nor copied until it is restored."""
    monkeypatch.setenv("MRI_STORAGE_ROOT", s3_root)
    monkeypatch.setenv("MRI_STORAGE_CONN_ID", "test_s3")
    monkeypatch.setenv("MRI_INGEST_ATTEMPTS", "2")
    monkeypatch.setenv("MRI_SENSOR_POKE_SECONDS", "1")
    settings.cache_clear()
    storage = get_storage()
    storage.write("landing/train/glioma (1).jpg", jpeg(1))
    bucket, prefix = s3_root[len("s3://") :].split("/", 1)
    poison = "landing/train/glioma (2).jpg"
    storage.client.put_object(Bucket=bucket, Key=f"{prefix}/{poison}", Body=jpeg(2), StorageClass="GLACIER")
    storage.write("landing/train/glioma (3).jpg", jpeg(3))

    assert run_dag().state == DagRunState.SUCCESS
    assert keys(storage, "raw/train") == ["raw/train/glioma (1).jpg", "raw/train/glioma (3).jpg"]
    assert keys(storage, "landing/train") == [poison]

    assert run_dag().state == DagRunState.SUCCESS

    assert storage.exists(poison), "a file that cannot be moved must stay where it is"
    assert keys(storage, "landing/train") == [], "a parked file must not start runs"
    assert storage.landing_sensor("wait", "landing/train", 1).poke({}) is False
    [parked] = [row for row in log_rows(storage) if row["reason"] and "parked" in row["reason"]]
    assert parked["source"] == poison and parked["outcome"] == "failed"
    settings.cache_clear()


def test_a_reupload_under_the_same_name_between_copy_and_delete_survives(storage_settings):
    storage = get_storage()
    key = "landing/train/glioma (1).jpg"
    storage.write(key, jpeg(1))
    raced = []

    class UploaderRacesTheMover(type(storage)):
        def copy_new(self, *args, **kwargs):
            copied = super().copy_new(*args, **kwargs)
            if not raced:  # right after the copy: the uploader renames glioma (1).jpg.part into place
                raced.append(True)
                storage.write(key, jpeg(2))
            return copied

    outcome = ingest_file(UploaderRacesTheMover(storage.root, storage.conn_id), key, "train")

    assert raced and outcome.outcome == "moved"
    assert storage.read("raw/train/glioma (1).jpg") == jpeg(1)
    assert keys(storage, "landing/train") == [key], "the second upload was deleted unread"
    assert storage.read(key) == jpeg(2)


def test_a_named_pipe_in_landing_is_quarantined_not_waited_on(tmp_path):
    storage = get_storage(str(tmp_path / "storage"))
    storage.write("landing/train/glioma (1).jpg", jpeg(1))
    fifo = tmp_path / "storage/landing/train/glioma (2).jpg"
    os.mkfifo(fifo)
    outcomes = {}

    def move():
        for key in keys(storage, "landing/train"):
            outcomes[key] = ingest_file(storage, key, "train")

    mover = threading.Thread(target=move, daemon=True)
    mover.start()
    mover.join(timeout=60)
    if mover.is_alive():  # release the reader the mover is stuck in, then report
        with open(os.open(fifo, os.O_WRONLY), "wb"):
            pass
        mover.join()
        pytest.fail("the mover blocked on a named pipe")

    pipe = outcomes["landing/train/glioma (2).jpg"]
    assert (pipe.outcome, pipe.reason) == ("quarantined", "not a regular file: a named pipe (FIFO)")
    assert outcomes["landing/train/glioma (1).jpg"].outcome == "moved"
    assert keys(storage, "landing/train") == []


def test_moving_and_registering_tasks_have_an_execution_timeout():
    from include.registry.dag import build_preprocess_dag

    limit = timedelta(minutes=settings().batch_timeout_minutes)
    ingestion, preprocess = build_ingestion_dag("train", "t"), build_preprocess_dag("train", "t")
    assert ingestion.get_task("move_batch").execution_timeout == limit
    assert preprocess.get_task("register_batch").execution_timeout == limit


def test_s3_landing_sensor_ignores_what_the_listing_ignores(s3_root):
    storage = get_storage(s3_root, "test_s3")
    bucket, prefix = s3_root[len("s3://") :].split("/", 1)
    storage.client.put_object(Bucket=bucket, Key=f"{prefix}/landing/train/", Body=b"")  # a folder marker
    storage.write("landing/train/glioma (1).jpg.part", b"half an upload")
    storage.write("landing/train/.DS_Store", b"finder metadata")
    sensor = storage.landing_sensor("wait_for_landing_files", "landing/train", 0.05)

    assert sensor.poke({}) is False
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger

    async def first_event(timeout: float):
        return await asyncio.wait_for(trigger.run().__anext__(), timeout)

    with pytest.raises(TimeoutError):
        asyncio.run(first_event(0.5))
    storage.write("landing/train/glioma (1).jpg", jpeg(1))
    assert sensor.poke({}) is True
    assert asyncio.run(first_event(10)).payload["prefix"] == "landing/train"


def test_a_copy_left_in_raw_by_a_crash_is_still_announced_for_registration(storage_settings):
    storage = get_storage()
    # The crash: copied to raw/, never deleted from landing.
    storage.write("raw/train/glioma (1).jpg", jpeg(1))
    storage.write("landing/train/glioma (1).jpg", jpeg(1))

    run = run_dag()

    assert run.state == DagRunState.SUCCESS
    assert run.get_task_instance("summarize").state == TaskInstanceState.SUCCESS, "raw/train was not emitted"
    assert keys(storage, "landing/train") == []


def test_cross_filesystem_copy_leaves_another_movers_temp_file_alone(tmp_path):
    # The fallback a store on two filesystems takes (landing/ mounted apart from raw/); a link
    # between them would be refused as a way out of the root, so the copy is driven directly.
    from include.storage.local import LocalStorage

    elsewhere = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        if os.stat(elsewhere).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm is on the same filesystem as the test folder")
        source = elsewhere / "glioma (1).jpg"
        source.write_bytes(jpeg(1))
        raw = tmp_path / "raw/train"
        raw.mkdir(parents=True)
        other = raw / ".glioma (1).jpg.tmp"
        other.write_bytes(b"another mover's copy in progress")

        assert LocalStorage._copy_across_filesystems(source, raw / "glioma (1).jpg") is True

        assert (raw / "glioma (1).jpg").read_bytes() == jpeg(1)
        assert other.read_bytes() == b"another mover's copy in progress"
        assert sorted(p.name for p in raw.iterdir()) == [other.name, "glioma (1).jpg"]
    finally:
        import shutil

        shutil.rmtree(elsewhere, ignore_errors=True)


def test_a_batch_name_fits_the_metadata_column_for_any_file_name(tmp_path, monkeypatch):
    monkeypatch.setenv("MRI_STORAGE_ROOT", str(tmp_path / "storage"))
    settings.cache_clear()
    storage = get_storage()
    deep_key = "landing/train/" + "site " * 40 + "/" + "glioma (1) " * 20 + ".jpg"  # 430 characters
    storage.write(deep_key, jpeg(1))

    run = run_dag()

    assert run.state == DagRunState.SUCCESS
    [batch] = [ti for ti in run.get_task_instances() if ti.task_id == "move_batch"]
    assert 0 < len(batch.rendered_map_index) <= 250  # rendered_map_index is VARCHAR(250) in the metadata DB
    settings.cache_clear()


def test_names_that_break_the_old_mover_still_get_an_outcome(tmp_path, monkeypatch):
    """A name too long for a fingerprint suffix, and a name that is not UTF-8 (local folder)."""
    monkeypatch.setenv("MRI_STORAGE_ROOT", str(tmp_path / "storage"))
    settings.cache_clear()
    storage = get_storage()
    long_name = "glioma (1) " + "x" * 230 + ".jpg"  # 245 bytes: fits, but not with " (upload <hash>)"
    storage.write(f"raw/train/{long_name}", jpeg(1))
    storage.write(f"landing/train/{long_name}", jpeg(2))
    storage.write("landing/train/glioma (3).jpg", jpeg(3))
    landing = os.fsencode(tmp_path / "storage/landing/train")
    with open(os.path.join(landing, b"a glioma (4) \xff.jpg"), "wb") as f:  # sorted first: it names the batch
        f.write(jpeg(4))

    run = run_dag()

    assert run.state == DagRunState.SUCCESS
    [batch] = [ti for ti in run.get_task_instances() if ti.task_id == "move_batch"]
    assert batch.rendered_map_index == "landing/train/a glioma (4) \\xff.jpg"

    assert keys(storage, "landing/train") == []
    raw = keys(storage, "raw/train")
    assert len(raw) == 4 and "raw/train/glioma (3).jpg" in raw
    assert all(len(os.fsencode(k.rsplit("/", 1)[1])) <= 255 for k in raw)
    assert sorted(storage.read(k) for k in raw) == sorted(jpeg(i) for i in range(1, 5))
    settings.cache_clear()


def test_a_claim_left_by_a_crashed_mover_stays_listed_and_is_finished_later(tmp_path):
    from include.storage.local_sensor import has_complete_file

    storage = get_storage(str(tmp_path / "storage"))
    key = "landing/train/glioma (1).jpg"
    storage.write(key, jpeg(1))
    storage.claim(key)  # the mover renamed it to its private name, then died

    assert keys(storage, "landing/train") == [key]
    assert has_complete_file(str(tmp_path / "storage/landing/train"))
    assert ingest_file(storage, key, "train").outcome == "moved"
    assert storage.read("raw/train/glioma (1).jpg") == jpeg(1)
    assert keys(storage, "landing/train") == [] and not has_complete_file(str(tmp_path / "storage/landing/train"))


def test_a_parked_file_is_neither_listed_nor_sensed_until_its_marker_is_deleted(tmp_path):
    from include.storage.local_sensor import has_complete_file

    storage = get_storage(str(tmp_path / "storage"))
    key = "landing/train/glioma (1).jpg"
    storage.write(key, jpeg(1))
    marker = storage.park(key, "failed 3 times")
    landing = str(tmp_path / "storage/landing/train")

    assert keys(storage, "landing/train") == [] and not has_complete_file(landing)
    storage.delete(marker)
    assert keys(storage, "landing/train") == [key] and has_complete_file(landing)
