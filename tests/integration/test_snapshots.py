"""Snapshots on DuckDB and a real PostgreSQL: named by content, frozen, and only gated ones are served."""

import hashlib

import pytest

from include.db import get_database
from include.db.migrations import apply_migrations
from include.ml.data import holdout_keys
from include.registry.records import ImageRecord, write_records
from include.registry.snapshots import (
    NoGatedSnapshotError,
    load_snapshot,
    passed_snapshot,
    snapshot_id,
    take_snapshot,
)
from include.storage import get_storage
from include.training.members import read_members, write_members


def record(n: int, label: str, split: str = "train") -> ImageRecord:
    return ImageRecord(
        f"{n:064x}", f"raw/{split}/{label} ({n}).jpg", split, label, 96, 96, "L", 10, "registered", None, "r"
    )


@pytest.fixture
def db(db_conn_id):
    database = get_database(db_conn_id)
    apply_migrations(database)
    return database


def record_gate(db, split: str, run_id: str, snapshot: str, success: bool) -> None:
    p = db.placeholder
    with db.transaction() as cursor:
        cursor.execute(
            f"INSERT INTO quality_runs (suite, split, run_id, success, snapshot) VALUES ({p}, {p}, {p}, {p}, {p})",
            ("registry", split, run_id, success, snapshot),
        )


def test_snapshot_name_depends_on_content_and_labels_not_order():
    assert snapshot_id([("a", "glioma"), ("b", "meningioma")]) == snapshot_id([("b", "meningioma"), ("a", "glioma")])
    assert snapshot_id([("a", "glioma")]) != snapshot_id([("a", "meningioma")])
    # A subject is part of the name; without one, the name is the one snapshots had before subjects.
    assert snapshot_id([("a", "glioma", "P-1")]) != snapshot_id([("a", "glioma", None)])
    assert snapshot_id([("a", "glioma", None)]) == hashlib.sha256(b"a glioma\n").hexdigest()


def test_rows_registered_after_the_snapshot_are_not_in_it(db):
    write_records(db, [record(1, "glioma"), record(2, "meningioma")], "r1")
    first = take_snapshot(db, "train")
    write_records(db, [record(3, "glioma")], "r2")
    record_gate(db, "train", "gate-1", first.snapshot_id, success=True)

    served = passed_snapshot(db, "train")

    assert served.snapshot_id == first.snapshot_id
    assert [i.content_hash for i in served.images] == [f"{1:064x}", f"{2:064x}"]
    assert served.label_counts() == {"glioma": 1, "meningioma": 1}


def test_a_snapshot_keeps_its_subjects_and_hands_them_to_the_fine_tune(db, tmp_path):
    subject_1 = [record(n, "glioma")._replace(subject="P-1") for n in (1, 2)]
    write_records(db, [*subject_1, record(3, "meningioma")], "r1")

    taken = take_snapshot(db, "train")

    assert [i.subject for i in taken.images] == ["P-1", "P-1", None]
    assert taken.snapshot_id == snapshot_id([(i.content_hash, i.label, i.subject) for i in taken.images])
    assert load_snapshot(db, taken.snapshot_id) == taken
    # The fine-tune reads the members from the storage: a subject's images share one holdout key.
    storage = get_storage(str(tmp_path / "storage"))
    items = read_members(storage, write_members(storage, taken))
    assert holdout_keys(items) == ["subject:P-1", "subject:P-1", f"{3:064x}"]


def test_taking_the_same_snapshot_twice_stores_its_members_once(db):
    write_records(db, [record(1, "glioma"), record(2, "meningioma")], "r1")
    assert take_snapshot(db, "train") == take_snapshot(db, "train")
    assert db.fetch_all("SELECT COUNT(*) FROM snapshot_images") == [(2,)]


def test_a_failed_gate_serves_nothing_and_says_what_to_run(db):
    write_records(db, [record(1, "glioma", "test")], "r1")
    record_gate(db, "test", "gate-1", take_snapshot(db, "test").snapshot_id, success=False)

    with pytest.raises(NoGatedSnapshotError, match="Let quality_gate_test run"):
        passed_snapshot(db, "test")
