"""A file over MRI_MAX_UPLOAD_BYTES is quarantined by its listed size, before it is read (issue 19).

The local files are sparse: 3 GiB that start with JPEG bytes and cost no disk, but reading one
whole would take seconds and raise the process's peak memory by gigabytes, which the tests check
did not happen. On S3 (moto's server over HTTP) a small cap stands in for a large file.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from include.config import settings
from include.ingestion.mover import move_files
from include.registry.records import Limits, fingerprint
from include.storage import get_storage
from tests.support.uploads import encoded, head

JPEG_START = b"\xff\xd8\xff\xe0"
GIB = 1024**3
DEFAULT_CAP = 64 * 1024 * 1024
# Far below the gigabytes a whole read would take, far above what a test's own work moves.
MEMORY_HEADROOM = 256 * 1024 * 1024


def sparse_upload(path: Path, size: int, start: bytes = JPEG_START) -> None:
    """A file of ``size`` bytes beginning with ``start``, the rest a hole: no disk is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(start)
    os.truncate(path, size)


def peak_memory() -> int:
    """The most memory this process has held so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.fixture
def local_root(tmp_path: Path) -> Path:
    return tmp_path / "storage"


def test_a_3_gib_upload_that_starts_like_a_jpeg_is_quarantined_unread_and_kept(local_root):
    sparse_upload(local_root / "landing/train/glioma (1).jpg", 3 * GIB)
    storage = get_storage(str(local_root))
    before = peak_memory()

    [outcome] = move_files(storage, ["landing/train/glioma (1).jpg"], "train", max_attempts=1)

    assert (outcome.outcome, outcome.destination) == ("quarantined", "quarantine/train/glioma (1).jpg")
    assert outcome.reason == f"too large: {3 * GIB} bytes, MRI_MAX_UPLOAD_BYTES is {DEFAULT_CAP}; not read"
    assert peak_memory() - before < MEMORY_HEADROOM, "the upload was read into memory"
    # Lost nothing: the same file, whole, in quarantine/; nothing in raw/ or landing/.
    assert (local_root / "quarantine/train/glioma (1).jpg").stat().st_size == 3 * GIB
    assert [o.key for o in storage.list("landing/train")] == [] and not storage.exists("raw/train/glioma (1).jpg")


def test_a_second_oversized_upload_of_the_same_name_is_kept_beside_the_first_unread(local_root):
    """The quarantine/ name is taken: the two are compared by hashes read a chunk at a time, never whole."""
    size = 256 * 1024 * 1024
    sparse_upload(local_root / "quarantine/train/glioma (1).jpg", size)
    sparse_upload(local_root / "landing/train/glioma (1).jpg", size, start=JPEG_START + b"other bytes")
    storage = get_storage(str(local_root))
    before = peak_memory()

    [outcome] = move_files(storage, ["landing/train/glioma (1).jpg"], "train", max_attempts=1)

    assert outcome.outcome == "quarantined" and outcome.reason.startswith(f"too large: {size} bytes")
    assert outcome.destination.startswith("quarantine/train/glioma (1) (upload ")
    assert peak_memory() - before < MEMORY_HEADROOM / 2, "the two files were read into memory"
    assert [o.size for o in storage.list("quarantine/train")] == [size, size]


def test_the_registry_quarantines_a_3_gib_file_in_raw_unread(local_root):
    sparse_upload(local_root / "raw/train/glioma (1).jpg", 3 * GIB)
    storage = get_storage(str(local_root))
    uri = storage.uri("raw/train/glioma (1).jpg")
    before = peak_memory()

    record = fingerprint(storage, uri, "train", "run", ("glioma", "meningioma"), {}, Limits(64, 10**7))

    assert (record.status, record.bytes) == ("quarantined", 3 * GIB)
    assert record.reason == f"too large: {3 * GIB} bytes, MRI_MAX_UPLOAD_BYTES is {DEFAULT_CAP}; not read"
    assert peak_memory() - before < MEMORY_HEADROOM, "the file was read into memory"


def test_the_cap_is_a_setting_on_every_store(storage_settings, monkeypatch):
    """One byte over MRI_MAX_UPLOAD_BYTES is refused, in landing and in raw/; an image under it passes."""
    image = encoded(head(1), "JPEG")
    cap = len(image) + 100
    monkeypatch.setenv("MRI_MAX_UPLOAD_BYTES", str(cap))
    settings.cache_clear()
    storage = get_storage()
    too_large = JPEG_START + bytes(cap + 1 - len(JPEG_START))
    reason = f"too large: {cap + 1} bytes, MRI_MAX_UPLOAD_BYTES is {cap}; not read"
    storage.write("landing/train/glioma (1).jpg", too_large)
    storage.write("landing/train/glioma (2).jpg", image)

    outcomes = move_files(storage, ["landing/train/glioma (1).jpg", "landing/train/glioma (2).jpg"], "train", 1)

    assert [(o.outcome, o.reason) for o in outcomes] == [("quarantined", reason), ("moved", None)]
    assert storage.read("quarantine/train/glioma (1).jpg") == too_large

    storage.write("raw/train/glioma (3).jpg", too_large)
    limits = Limits(64, 10**7, settings().max_upload_bytes)
    records = [
        fingerprint(storage, storage.uri(key), "train", "run", settings().labels, {}, limits)
        for key in ("raw/train/glioma (2).jpg", "raw/train/glioma (3).jpg")
    ]
    assert [(r.status, r.reason, r.bytes) for r in records] == [
        ("registered", None, len(image)),
        ("quarantined", reason, cap + 1),
    ]
