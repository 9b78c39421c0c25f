"""The preprocess DAGs on DuckDB and on a real PostgreSQL: same files in, same registry out."""

import csv
import io
import os
import struct
import zlib

import numpy as np
import pytest
from airflow.utils.state import DagRunState
from PIL import Image

from include.config import settings
from include.db import get_database
from include.registry.dag import build_preprocess_dag
from include.storage import get_storage


def image_bytes(seed: int, mode: str = "L", size: int = 96, fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 255, (size, size, channels), dtype=np.uint8).squeeze()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)  # the mode follows the array's shape
    return buffer.getvalue()


def png_16_bit(size: int = 96) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(size * size, dtype=np.uint16).reshape(size, size) * 7).save(buffer, "PNG")
    return buffer.getvalue()


def decompression_bomb(side: int = 20_000) -> bytes:
    """A valid PNG header claiming side x side pixels, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def registry(db_conn_id, tmp_path, monkeypatch):
    """Settings pointing at the backend under test and a local store in the test's folder."""
    monkeypatch.setenv("AIRFLOW_VAR_MRI_DB_CONN_ID", db_conn_id)
    monkeypatch.setenv("MRI_STORAGE_ROOT", str(tmp_path / "storage"))
    monkeypatch.setenv("MRI_REGISTER_BATCH_SIZE", "4")
    settings.cache_clear()
    yield get_database(db_conn_id), get_storage()
    settings.cache_clear()


GOOD = {f"glioma ({i}).jpg": image_bytes(i) for i in range(1, 5)} | {
    f"meningioma ({i}).jpg": image_bytes(100 + i) for i in range(1, 4)
}


def image_rows(db, split=None):
    where = f" WHERE split = {db.placeholder}" if split else ""
    rows = db.fetch_all(
        "SELECT content_hash, uri, split, label, width, height, mode, bytes, status, reason FROM images" + where,
        (split,) if split else None,
    )
    return sorted(rows)


def use_labels_csv(storage, monkeypatch, csv: bytes, labels: str | None = None) -> None:
    """Upload ``csv`` as the labels CSV and point MRI_LABELS_CSV (and ``labels``: MRI_LABELS) at it."""
    if labels:
        monkeypatch.setenv("MRI_LABELS", labels)
    monkeypatch.setenv("MRI_LABELS_CSV", "labels.csv")
    settings.cache_clear()
    storage.write("labels.csv", csv)


def test_registers_good_files_once_and_rerun_changes_nothing(registry):
    db, storage = registry
    for name, data in GOOD.items():
        storage.write(f"raw/train/{name}", data)

    assert build_preprocess_dag("train", "t").test().state == DagRunState.SUCCESS
    first = image_rows(db)
    assert build_preprocess_dag("train", "t").test().state == DagRunState.SUCCESS

    assert image_rows(db) == first
    assert len(first) == len(GOOD)
    assert {(r[3], r[8]) for r in first} == {("glioma", "registered"), ("meningioma", "registered")}


def write_bad_inputs(storage, root):
    """Every kind of bad file the registry must survive, next to one good one."""
    truncated = image_bytes(7)
    files = {
        "glioma (1).jpg": image_bytes(1),
        "glioma (2).jpg": b"",
        "glioma (3).jpg": truncated[: len(truncated) // 2],
        "glioma (4).png": b"plain text pretending to be a PNG",
        "glioma (5).png": png_16_bit(),
        "meningioma (6).png": image_bytes(6, "RGBA", fmt="PNG"),
        "meningioma (7).png": decompression_bomb(),
        "glioma (8)'); DROP TABLE images;--.jpg": image_bytes(8),
        "méningiome (9) 脑.jpg": image_bytes(9),
        "meningioma (10).jpg": image_bytes(10, size=16),
        "pituitary (11).jpg": image_bytes(11),
        "scan_without_label.jpg": image_bytes(12),
    }
    for name, data in files.items():
        storage.write(f"raw/train/{name}", data)
    (root / "raw/train/x.jpg").mkdir()
    (root / "raw/train/meningioma (13).jpg").symlink_to("/etc/passwd")
    os.mkfifo(root / "raw/train/glioma (14).jpg")  # opening it for reading would wait for a writer forever
    with open(os.fsencode(root / "raw/train") + b"/glioma (15) \xff.jpg", "wb") as f:  # Linux names are bytes
        f.write(image_bytes(15))
    return files


def test_every_bad_input_is_registered_or_quarantined_with_a_reason(registry, tmp_path):
    db, storage = registry
    write_bad_inputs(storage, tmp_path / "storage")

    assert build_preprocess_dag("train", "t").test().state == DagRunState.SUCCESS

    rows = db.fetch_all("SELECT uri, status, reason, label, mode FROM images")
    by_name = {uri.rsplit("/", 1)[1]: (status, reason, label, mode) for uri, status, reason, label, mode in rows}
    assert by_name["glioma (1).jpg"] == ("registered", None, "glioma", "L")
    assert by_name["glioma (2).jpg"][:2] == ("quarantined", "empty file (0 bytes)")
    assert by_name["glioma (3).jpg"][1].startswith("cannot decode")
    assert by_name["glioma (4).png"][1].startswith("cannot decode")
    assert by_name["glioma (5).png"] == ("registered", None, "glioma", "I;16")
    assert by_name["meningioma (6).png"] == ("registered", None, "meningioma", "RGBA")
    assert by_name["meningioma (7).png"][1].startswith(
        "decompression bomb: too large to decode (Image size (400000000 pixels)"
    )
    assert by_name["glioma (8)'); DROP TABLE images;--.jpg"] == ("registered", None, "glioma", "L")
    assert by_name["méningiome (9) 脑.jpg"][1] == "unknown label 'méningiome'; MRI_LABELS is glioma,meningioma"
    assert by_name["meningioma (10).jpg"][1] == "too small: 16x16, MRI_MIN_IMAGE_SIDE is 64"
    assert by_name["pituitary (11).jpg"][1].startswith("unknown label 'pituitary'")
    assert by_name["scan_without_label.jpg"][1].startswith("no label")
    assert "x.jpg" not in by_name  # a folder is not a file to register (the Astro SDK lists both)
    assert by_name["meningioma (13).jpg"][1].startswith("unreadable")
    assert by_name["glioma (14).jpg"][1] == "unreadable: not a regular file: a named pipe (FIFO)"
    assert by_name["glioma (15) \\xff.jpg"][1].startswith("file name is not valid UTF-8")
    assert len(rows) == 15
    [(files,)] = db.fetch_all("SELECT COUNT(*) FROM image_files")
    assert files == 15


def test_duckdb_and_postgres_build_identical_registries(duckdb_conn_id, postgres_conn_id, tmp_path, monkeypatch):
    """The same files, the same DAG, one variable changed: the same rows (timestamps aside)."""
    storage_root = tmp_path / "storage"
    monkeypatch.setenv("MRI_STORAGE_ROOT", str(storage_root))
    monkeypatch.setenv("MRI_REGISTER_BATCH_SIZE", "3")
    registries = []
    for conn_id in (duckdb_conn_id, postgres_conn_id):
        monkeypatch.setenv("AIRFLOW_VAR_MRI_DB_CONN_ID", conn_id)
        settings.cache_clear()
        storage = get_storage()
        if not storage.list("raw"):
            write_bad_inputs(storage, storage_root)
            for name, data in GOOD.items():
                storage.write(f"raw/test/{name}", data)
        for split in ("train", "test"):
            assert build_preprocess_dag(split, "t").test().state == DagRunState.SUCCESS
        registries.append(
            (
                image_rows(get_database(conn_id)),
                get_database(conn_id).fetch_all("SELECT uri, content_hash, split FROM image_files ORDER BY uri"),
            )
        )
    settings.cache_clear()

    (duck_images, duck_files), (pg_images, pg_files) = registries
    assert set(duck_images) ^ set(pg_images) == set()
    assert set(duck_files) ^ set(pg_files) == set()
    assert duck_images == pg_images and duck_files == pg_files  # and in the same order
    # test/glioma (1).jpg has the bytes of train/glioma (1).jpg: one content, two files, leaked.
    assert len(duck_images) == 15 + len(GOOD) - 1
    assert len(duck_files) == 15 + len(GOOD)


def test_content_in_both_splits_is_flagged_as_leakage(registry):
    db, storage = registry
    storage.write("raw/train/glioma (1).jpg", image_bytes(1))
    storage.write("raw/test/glioma (77).jpg", image_bytes(1))  # the same scan, renamed

    for split in ("train", "test"):
        assert build_preprocess_dag(split, "t").test().state == DagRunState.SUCCESS

    [(content_hash, splits, files)] = db.fetch_all("SELECT content_hash, splits, files FROM leaked_images")
    assert (splits, files) == (2, 2)
    assert db.fetch_all("SELECT split FROM images") == [("train",)]  # counted once, where first seen


def test_every_registry_task_runs_in_the_db_pool_and_only_those():
    dag = build_preprocess_dag("train", "t")
    pools = {t.task_id: t.pool for t in dag.tasks}
    outside = {"list_raw_files"}
    assert {tid for tid, pool in pools.items() if pool != settings().db_pool} == outside


def test_labels_csv_overrides_the_file_name_and_n_classes_work(registry, monkeypatch):
    db, storage = registry
    csv = b"file,label\nscan_001.jpg,Pituitary\nglioma (1).jpg,meningioma\n"
    use_labels_csv(storage, monkeypatch, csv, labels="glioma,meningioma,pituitary")
    storage.write("raw/train/scan_001.jpg", image_bytes(1))
    storage.write("raw/train/glioma (1).jpg", image_bytes(2))
    storage.write("raw/train/glioma (2).jpg", image_bytes(3))

    assert build_preprocess_dag("train", "t").test().state == DagRunState.SUCCESS

    labels = {uri.rsplit("/", 1)[1]: label for uri, label in db.fetch_all("SELECT uri, label FROM images")}
    assert labels == {"scan_001.jpg": "pituitary", "glioma (1).jpg": "meningioma", "glioma (2).jpg": "glioma"}
    # A CSV without a subject column gives no file a subject.
    assert db.fetch_all("SELECT DISTINCT subject FROM image_files") == [(None,)]


def test_subjects_come_from_the_labels_csv_else_a_subject_folder(registry, monkeypatch):
    db, storage = registry
    use_labels_csv(
        storage,
        monkeypatch,
        b"file,label,subject\n"
        b"scan_001.jpg,glioma, P-001 \n"  # stripped
        b"site_a/scan_002.jpg,meningioma,\n"  # an empty cell: no subject, and site_a/ is no subject
        b"subject=P-009/scan_003.jpg,glioma,P-002\n",  # the CSV's subject wins over the folder's
    )
    files = {
        "scan_001.jpg": image_bytes(1),
        "scan_001 (upload 0123456789ab).jpg": image_bytes(2),  # a re-upload keeps its CSV row
        "site_a/scan_002.jpg": image_bytes(3),
        "subject=P-009/scan_003.jpg": image_bytes(4),
        "subject=P-003/glioma (4).jpg": image_bytes(5),  # not in the CSV: labelled by name, subject by folder
        "subject=P-003/day 2/meningioma (5).jpg": image_bytes(6),  # the nearest subject folder above it
    }
    for name, data in files.items():
        storage.write(f"raw/train/{name}", data)

    assert build_preprocess_dag("train", "t").test().state == DagRunState.SUCCESS

    area = storage.uri("raw/train/")
    registered = db.fetch_all(
        "SELECT f.uri, f.subject, i.subject FROM image_files f JOIN images i USING (content_hash)"
    )
    assert {uri.removeprefix(area): (subject, first) for uri, subject, first in registered} == {
        "scan_001.jpg": ("P-001", "P-001"),
        "scan_001 (upload 0123456789ab).jpg": ("P-001", "P-001"),
        "site_a/scan_002.jpg": (None, None),
        "subject=P-009/scan_003.jpg": ("P-002", "P-002"),
        "subject=P-003/glioma (4).jpg": ("P-003", "P-003"),
        "subject=P-003/day 2/meningioma (5).jpg": ("P-003", "P-003"),
    }


def test_a_subject_that_is_not_an_id_quarantines_its_file_and_unicode_forms_are_one_subject(registry, monkeypatch):
    """A newline would let two snapshots' member lists hash alike, PostgreSQL refuses NUL, and a long
    text would fill every message: such a file is quarantined with the reason, the batch goes on.
    A macOS folder name (NFD) and a CSV cell (NFC) name the same subject."""
    db, storage = registry
    nfc, nfd = "M\u00fcller", "Mu\u0308ller"
    rows = [("glioma (1).jpg", "P-1\nbb meningioma"), ("glioma (2).jpg", "P\x00-2"), ("glioma (3).jpg", "x" * 129)]
    rows.append(("glioma (4).jpg", nfc))
    text = io.StringIO()
    csv.writer(text).writerows([("file", "label", "subject"), *((name, "glioma", subject) for name, subject in rows)])
    use_labels_csv(storage, monkeypatch, text.getvalue().encode())
    for number, (name, _) in enumerate(rows):
        storage.write(f"raw/train/{name}", image_bytes(number))
    storage.write(f"raw/train/subject={nfd}/meningioma (5).jpg", image_bytes(9))

    assert build_preprocess_dag("train", "t").test().state == DagRunState.SUCCESS

    outcome = {
        uri.rsplit("/", 1)[1]: (status, reason, subject)
        for uri, status, reason, subject in db.fetch_all(
            "SELECT f.uri, i.status, i.reason, f.subject FROM image_files f JOIN images i USING (content_hash)"
        )
    }
    for name in ("glioma (1).jpg", "glioma (2).jpg", "glioma (3).jpg"):
        status, reason, subject = outcome[name]
        assert (status, subject) == ("quarantined", None) and "is not a subject id" in reason, outcome[name]
    assert outcome["glioma (4).jpg"] == ("registered", None, nfc)
    assert outcome["meningioma (5).jpg"] == ("registered", None, nfc)


def test_registers_from_a_local_folder_and_from_s3_alike(storage_settings, duckdb_conn_id, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MRI_DB_CONN_ID", duckdb_conn_id)
    settings.cache_clear()
    storage = get_storage()
    for name, data in GOOD.items():
        storage.write(f"raw/train/{name}", data)

    assert build_preprocess_dag("train", "t").test().state == DagRunState.SUCCESS

    uris = sorted(uri for (uri,) in get_database(duckdb_conn_id).fetch_all("SELECT uri FROM images"))
    assert uris == sorted(storage.uri(f"raw/train/{name}") for name in GOOD)
