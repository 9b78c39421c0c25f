"""The quality gate on DuckDB and a real PostgreSQL: clean data passes and emits, every injected
fault fails naming its expectation and emits nothing, and gated data stays what the gate saw."""

import fcntl
import io
import json
import shlex
import threading
from pathlib import Path

import pytest
from airflow.utils.state import DagRunState, TaskInstanceState
from PIL import Image, PngImagePlugin

from include.config import settings
from include.db import get_database
from include.quality.dag import build_quality_gate_dag, build_quality_report_dag
from include.registry.pixels import perceptual_hash
from include.registry.records import ImageRecord, write_records
from include.registry.snapshots import NoGatedSnapshotError, passed_snapshot, snapshot_id
from include.wiring.datasets import GATE_PASSED
from tests.support.environment import gate_registry
from tests.support.metadata import dataset_events, register
from tests.support.uploads import encoded, hash_distance, head, upload


def record(n: int, label: str, split: str = "train", name: str | None = None, mode: str = "L") -> ImageRecord:
    """A registered image as the preprocess DAG writes it (96x96, content hash from ``n``)."""
    uri = f"raw/{split}/{name or f'{label} ({n}).jpg'}"
    return ImageRecord(f"{n:064x}", uri, split, label, 96, 96, mode, 10, "registered", None, "r")


CLEAN = {
    "train": [record(n, "glioma") for n in range(1, 4)] + [record(n, "meningioma") for n in range(4, 7)],
    "test": [record(n, "glioma", "test") for n in range(11, 13)] + [record(n, "meningioma", "test") for n in (13, 14)],
}


@pytest.fixture
def gate_env(db_conn_id, tmp_path, monkeypatch):
    """The backend under test, quality and notification folders of this test, thresholds for a few images."""
    db = gate_registry(db_conn_id, tmp_path, monkeypatch, MRI_QUALITY_MIN_CLASS_RATIO="0.5")
    write_records(db, CLEAN["train"] + CLEAN["test"], "r")
    yield db, tmp_path
    settings.cache_clear()


def run_gate_dag(split: str = "train"):
    run = register(build_quality_gate_dag(split, "t")).test()
    return run, run.get_task_instance("validate_snapshot")


def gate_events(run) -> int:
    return dataset_events(GATE_PASSED["train"].uri, [run.run_id])


def quality_runs(db) -> list[tuple]:
    return db.fetch_all("SELECT split, run_id, success, snapshot, statistics, report_path FROM quality_runs")


def failed_columns(db, run) -> set[str]:
    """The columns of the expectations the gate run ``run`` recorded as failed."""
    [statistics] = [stats for _, run_id, _, _, stats, _ in quality_runs(db) if run_id == run.run_id]
    stats = statistics if isinstance(statistics, dict) else json.loads(statistics)
    return {e["column"] for e in stats["expectations"] if not e["success"]}


def failure_message(tmp_path, split: str) -> str:
    """The error of the gate's newest failure notification: what the task failed with."""
    notices = sorted((tmp_path / "notifications" / f"quality_gate_{split}").glob("*.failure.json"))
    return json.loads(notices[-1].read_text())["exception"]


def insert_image(db, content_hash: str, label: str | None) -> None:
    """A file's rows written straight into `images` and `image_files`, bypassing the registry's checks."""
    p = db.placeholder
    uri = f"raw/train/{content_hash}.jpg"
    with db.transaction() as cursor:
        cursor.execute(
            "INSERT INTO images (content_hash, uri, split, label, width, height, mode, bytes, status, "
            f"first_seen_run_id) VALUES ({p}, {p}, 'train', {p}, 96, 96, 'L', 10, 'registered', 'manual')",
            (content_hash, uri, label),
        )
        cursor.execute(
            "INSERT INTO image_files (uri, content_hash, split, run_id, label) "
            f"VALUES ({p}, {p}, 'train', 'manual', {p})",
            (uri, content_hash, label),
        )


def test_clean_data_passes_records_the_snapshot_and_emits(gate_env):
    db, tmp_path = gate_env

    run, ti = run_gate_dag()

    assert run.state == DagRunState.SUCCESS
    expected = snapshot_id([(r.content_hash, r.label) for r in CLEAN["train"]])
    [(split, run_id, success, snapshot, statistics, report_path)] = quality_runs(db)
    assert (split, run_id, bool(success), snapshot) == ("train", run.run_id, True, expected)
    stats = statistics if isinstance(statistics, dict) else json.loads(statistics)
    assert stats["classes"] == {"glioma": 3, "meningioma": 3}
    assert len(stats["expectations"]) == 19 and all("observed" in e for e in stats["expectations"])
    assert passed_snapshot(db, "train").snapshot_id == expected
    assert gate_events(run) == 1
    # The run's Data Docs page, and an index page that links it.
    assert Path(report_path).is_file() and run.run_id in Path(report_path).read_text()
    index = Path(ti.xcom_pull(task_ids="validate_snapshot")["index"])
    assert index.is_relative_to(tmp_path / "quality") and Path(report_path).name in index.read_text()


def test_the_same_snapshot_passing_again_is_recorded_but_announces_nothing(gate_env):
    db, _ = gate_env
    first, _ = run_gate_dag()

    again, _ = run_gate_dag()  # a re-upload of known files registers nothing new

    assert again.state == DagRunState.SUCCESS
    assert again.get_task_instance("announce").state == TaskInstanceState.SKIPPED
    assert (gate_events(first), gate_events(again)) == (1, 0)
    assert [bool(success) for _, _, success, *_ in quality_runs(db)] == [True, True]


def add_train(*records: ImageRecord):
    return lambda db: write_records(db, list(records), "r2")


# fault -> (how it is injected, the column whose expectation must fail, settings it runs with)
FAULTS = {
    "leakage": (add_train(record(1, "glioma", "test", name="glioma (77).jpg")), "leaked_contents", {}),
    "class_under_minimum": (
        add_train(record(20, "glioma"), record(21, "glioma")),
        "smallest_class_images",
        {"MRI_QUALITY_MIN_IMAGES_PER_CLASS": "4", "MRI_QUALITY_MIN_CLASS_RATIO": "0"},
    ),
    "unknown_label": (lambda db: insert_image(db, "f" * 64, "pituitary"), "label", {}),
    "null_label": (lambda db: insert_image(db, "e" * 64, None), "label", {}),
    "imbalance": (add_train(*(record(n, "glioma") for n in range(20, 24))), "class_ratio", {}),
    "two_labels": (
        add_train(record(30, "glioma"), record(30, "meningioma", name="meningioma (30).jpg")),
        "label_conflicts",
        {},
    ),
    "subject_in_both_splits": (
        add_train(record(31, "glioma")._replace(subject="P-1"), record(32, "glioma", "test")._replace(subject="P-1")),
        "leaked_subjects",
        {},
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_each_fault_fails_the_gate_names_it_and_emits_nothing(gate_env, fault, monkeypatch):
    db, tmp_path = gate_env
    inject, column, env = FAULTS[fault]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    inject(db)

    run, ti = run_gate_dag()

    assert run.state == DagRunState.FAILED and ti.state == TaskInstanceState.FAILED
    assert ti.max_tries == 0  # a failed expectation is never retried
    assert gate_events(run) == 0
    with pytest.raises(NoGatedSnapshotError):
        passed_snapshot(db, "train")
    [(_, run_id, success, _, statistics, _)] = quality_runs(db)
    assert run_id == run.run_id and not success
    stats = statistics if isinstance(statistics, dict) else json.loads(statistics)
    assert column in {e["column"] for e in stats["expectations"] if not e["success"]}
    # The failure notification carries the task's error: each failed expectation, its observed value.
    [notice] = (tmp_path / "notifications" / "quality_gate_train").glob("*.failure.json")
    error = json.loads(notice.read_text())["exception"]
    assert f"({column}) [" in error and "observed" in error


def test_the_same_pixels_in_other_bytes_under_another_label_fail_both_gates(gate_env):
    db, tmp_path = gate_env
    exported_again = PngImagePlugin.PngInfo()
    exported_again.add_text("Comment", "exported again")
    train = upload(db, "train", "glioma (50).png", encoded(head(1)), "upload-1")
    test = upload(db, "test", "meningioma (50).png", encoded(head(1), pnginfo=exported_again), "upload-2")

    for split in ("train", "test"):
        run, _ = run_gate_dag(split)

        assert run.state == DagRunState.FAILED
        assert {"leaked_contents", "label_conflicts"} <= failed_columns(db, run)
        # Both uploads are named, the newer first, with the command that takes one back.
        error = failure_message(tmp_path, split)
        assert test in error and error.index(test) < error.index(train)
        assert f"make retract URI={shlex.quote(test)} REASON=" in error


def test_a_resized_recompressed_copy_in_the_other_split_fails_as_a_near_duplicate(gate_env, monkeypatch):
    db, tmp_path = gate_env
    copy = encoded(head(2).resize((80, 80)), "JPEG", quality=60)
    train = upload(db, "train", "glioma (60).png", encoded(head(2)), "upload-1")
    test = upload(db, "test", "glioma (61).jpg", copy, "upload-2")

    run, _ = run_gate_dag()

    assert run.state == DagRunState.FAILED
    assert failed_columns(db, run) == {"near_duplicates"}  # other pixels: no leak, no conflict
    error = failure_message(tmp_path, "train")
    assert error.index(test) < error.index(train) and "bits apart (MRI_QUALITY_NEAR_DUPLICATE_BITS=12)" in error

    # The threshold is a setting: one bit less than the pair's distance lets it through.
    apart = hash_distance(perceptual_hash(head(2)), perceptual_hash(Image.open(io.BytesIO(copy))))
    monkeypatch.setenv("MRI_QUALITY_NEAR_DUPLICATE_BITS", str(apart - 1))
    settings.cache_clear()
    assert run_gate_dag()[0].state == DagRunState.SUCCESS


def of_subject(subject: str, *records: ImageRecord) -> list[ImageRecord]:
    return [r._replace(subject=subject) for r in records]


def retract(db, *records: ImageRecord) -> None:
    """Mark files retracted as `make retract` does (their bytes are not the gate's concern)."""
    marks = ", ".join([db.placeholder] * len(records))
    with db.transaction() as cursor:
        cursor.execute(
            f"UPDATE image_files SET retracted_at = current_timestamp WHERE uri IN ({marks})", [r.uri for r in records]
        )


def test_a_subject_in_both_splits_fails_both_gates_naming_it_until_its_files_are_in_one(gate_env, monkeypatch):
    db, tmp_path = gate_env
    monkeypatch.setenv("MRI_QUALITY_MAX_QUARANTINE_RATE", "0.5")  # the quarantined file below is no fault here
    settings.cache_clear()
    in_train = of_subject("P-7", record(50, "glioma"), record(51, "glioma")) + of_subject(
        "P-8", record(52, "meningioma")
    )
    write_records(db, in_train, "r2")
    in_test = of_subject("P-8", record(62, "meningioma", "test")) + of_subject("P-7", record(61, "glioma", "test"))
    write_records(db, in_test, "r3")
    # Not judged: a subject in one split, a retracted file and a quarantined one (in no snapshot).
    left_out = of_subject("P-9", record(53, "glioma"), record(64, "glioma", "test"))
    quarantined = of_subject("P-9", record(63, "glioma", "test")._replace(status="quarantined", reason="too small"))
    write_records(db, left_out + quarantined, "r4")
    retract(db, left_out[1])

    for split in ("train", "test"):
        run, _ = run_gate_dag(split)

        assert run.state == DagRunState.FAILED
        assert failed_columns(db, run) == {"leaked_subjects"}
        error = failure_message(tmp_path, split)
        named = "'P-7' (train 2, test 1 files), 'P-8' (train 1, test 1 files) in both splits"
        assert f"observed 2 (leaked_subject_example: {named}" in error and "P-9" not in error
        newest = in_test[1].uri
        assert f"the newest upload of 'P-7' is {newest} (test, glioma, registered " in error
        assert f"make retract URI={shlex.quote(newest)} REASON=" in error

    retract(db, *in_test)  # each subject's files in one split now

    assert [run_gate_dag(split)[0].state for split in ("train", "test")] == [DagRunState.SUCCESS] * 2
    subjects = {i.content_hash: i.subject for i in passed_snapshot(db, "train").images}
    assert subjects[in_train[0].content_hash] == "P-7" and subjects[CLEAN["train"][0].content_hash] is None


def test_rows_written_while_the_gate_validates_are_not_frozen_and_the_run_is_recorded(gate_env, db_conn_id):
    db, tmp_path = gate_env
    stop, written = threading.Event(), []

    def register_during_each_validation():
        """Another writer: a file whenever the gate validates, between reading the rows and freezing
        them (it holds the Data Docs lock then), both labels in turn."""
        writer, n, wrote = get_database(db_conn_id), 1000, False
        (tmp_path / "quality").mkdir(exist_ok=True)
        with open(tmp_path / "quality" / ".lock", "a") as lock:
            while not stop.wait(0.01):
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # the gate is validating
                    if not wrote:
                        write_records(writer, [record(n, ("glioma", "meningioma")[n % 2])], "busy")
                        written.append(n)
                        n, wrote = n + 1, True
                else:
                    fcntl.flock(lock, fcntl.LOCK_UN)
                    wrote = False

    writer = threading.Thread(target=register_during_each_validation)
    writer.start()
    try:
        run, _ = run_gate_dag()
    finally:
        stop.set()
        writer.join()

    assert run.state == DagRunState.SUCCESS and written, "no file was written while the gate validated"
    [(_, run_id, success, snapshot, _, _)] = quality_runs(db)
    frozen = passed_snapshot(db, "train")
    # Exactly the rows validated: the clean ones, not those written meanwhile.
    assert (run_id, bool(success), snapshot) == (run.run_id, True, frozen.snapshot_id)
    assert frozen.snapshot_id == snapshot_id([(i.content_hash, i.label) for i in frozen.images])
    assert {i.content_hash for i in frozen.images} == {r.content_hash for r in CLEAN["train"]}
    assert db.fetch_all("SELECT COUNT(*) FROM snapshot_images") == [(len(CLEAN["train"]),)]


def test_a_file_registered_after_the_gate_waits_for_the_next_gate_run(gate_env):
    db, _ = gate_env
    first, _ = run_gate_dag()
    assert first.state == DagRunState.SUCCESS
    write_records(db, [record(40, "glioma")], "late")

    served = passed_snapshot(db, "train")

    assert f"{40:064x}" not in {i.content_hash for i in served.images}
    assert served.label_counts() == {"glioma": 3, "meningioma": 3}
    second, _ = run_gate_dag()
    assert second.state == DagRunState.SUCCESS
    assert f"{40:064x}" in {i.content_hash for i in passed_snapshot(db, "train").images}


def test_report_validates_both_splits_and_gates_nothing(gate_env):
    db, tmp_path = gate_env
    insert_image(db, "f" * 64, "pituitary")  # the report shows the failure, it does not act on it

    run = build_quality_report_dag("t").test()

    assert run.state == DagRunState.SUCCESS
    result = run.get_task_instance("validate_both_splits").xcom_pull(task_ids="validate_both_splits")
    assert (result["train"]["success"], result["test"]["success"]) == (False, True)
    assert quality_runs(db) == [] and db.fetch_all("SELECT COUNT(*) FROM snapshot_images") == [(0,)]
    index = Path(result["train"]["index"]).read_text()
    assert index.count("<tr><td") == 2 and "pituitary" in index


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("MRI_QUALITY_MIN_CLASS_RATIO", "1.5", "must be a number in [0, 1]"),
        ("MRI_QUALITY_MAX_QUARANTINE_RATE", "lots", "must be a number in [0, 1]"),
        ("MRI_QUALITY_MIN_IMAGES_PER_CLASS", "0", "is not a positive integer"),
        ("MRI_QUALITY_MODES", " , ", "lists no PIL mode"),
        ("MRI_QUALITY_NEAR_DUPLICATE_BITS", "25", "must be a whole number of bits in [0, 24], e.g. 12."),
    ],
)
def test_a_bad_threshold_names_its_setting(name, value, says):
    from include.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=name) as error:
        load_settings({name: value})
    assert says in str(error.value)
