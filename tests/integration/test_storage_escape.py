"""An uploader who can write landing/ reaches nothing outside the storage root (issue 19).

Each test plants what a hostile uploader can plant in `landing/train/` (a symlink where the mover
keeps its private `.moving/` or `.parked/` folder, a symlinked subfolder) next to a secret file
outside the root, runs the real ingestion (the whole continuous DAG where it matters), and checks
that the secret is untouched, nothing was written outside, and the upload still ends somewhere.
"""

from __future__ import annotations

import os

import pytest
from airflow.utils.state import DagRunState

from include.config import settings
from include.ingestion.dag import build_ingestion_dag
from include.ingestion.mover import ingest_file, move_files
from include.storage import get_storage
from include.storage.base import UnsafePathError
from tests.support.files import jpeg, keys

SECRET = b"\xff\xd8\xff secret bytes outside the storage root"


@pytest.fixture
def outside(tmp_path):
    """A folder beside the storage root holding a secret file named like the upload."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "glioma (1).jpg").write_bytes(SECRET)
    return folder


@pytest.fixture
def local_root(tmp_path, monkeypatch):
    root = tmp_path / "storage"
    (root / "landing/train").mkdir(parents=True)
    monkeypatch.setenv("MRI_STORAGE_ROOT", str(root))
    monkeypatch.setenv("MRI_INGEST_ATTEMPTS", "1")
    settings.cache_clear()
    yield root
    settings.cache_clear()


def files_below(folder) -> dict[str, bytes]:
    found = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, folder)] = b"<link>" if os.path.islink(path) else open(path, "rb").read()
    return found


def test_a_symlinked_moving_folder_never_moves_or_deletes_a_file_outside_the_root(local_root, outside):
    storage = get_storage()
    os.symlink(outside, local_root / "landing/train/.moving")
    storage.write("landing/train/glioma (1).jpg", jpeg(1))

    run = build_ingestion_dag("train", doc_md="test").test()

    assert run.state == DagRunState.SUCCESS
    assert files_below(outside) == {"glioma (1).jpg": SECRET}, "the file outside the root was touched"
    assert SECRET not in b"".join(storage.read(k) for k in keys(storage, "quarantine") + keys(storage, "raw"))
    # The upload itself is moved as usual, and the impostor folder link is quarantined as what it is.
    assert storage.read("raw/train/glioma (1).jpg") == jpeg(1)
    assert keys(storage, "landing/train") == []
    assert not os.path.lexists(local_root / "landing/train/.moving") or (local_root / "landing/train/.moving").is_dir()
    link = local_root / "quarantine/train/.moving"
    assert os.path.islink(link) and os.readlink(link) == str(outside)


def test_an_upload_is_never_renamed_into_a_folder_outside_the_root(local_root, outside):
    storage = get_storage()
    os.symlink(outside, local_root / "landing/train/.moving")
    storage.write("landing/train/meningioma (2).jpg", jpeg(2))

    outcomes = move_files(storage, ["landing/train/meningioma (2).jpg"], "train", max_attempts=1)

    assert files_below(outside) == {"glioma (1).jpg": SECRET}, "an upload was renamed outside the root"
    assert [o.outcome for o in outcomes if o.source == "landing/train/meningioma (2).jpg"] == ["moved"]
    assert storage.read("raw/train/meningioma (2).jpg") == jpeg(2)
    [impostor] = [o for o in outcomes if o.source == "landing/train/.moving"]
    assert impostor.outcome == "quarantined"
    assert impostor.reason == "not a regular file: a symbolic link, where the mover keeps its private folder .moving"


def test_a_claim_refuses_a_private_folder_that_is_a_link(local_root, outside):
    storage = get_storage()
    os.symlink(outside, local_root / "landing/train/.moving")
    storage.write("landing/train/glioma (1).jpg", jpeg(1))

    with pytest.raises(UnsafePathError, match=r"landing/train/\.moving is a symbolic link, not a folder"):
        storage.claim("landing/train/glioma (1).jpg")
    assert files_below(outside) == {"glioma (1).jpg": SECRET}
    assert storage.read("landing/train/glioma (1).jpg") == jpeg(1)


def test_a_symlinked_parked_folder_gets_no_marker_outside_the_root(local_root, outside):
    storage = get_storage()
    os.symlink(outside, local_root / "landing/train/.parked")
    storage.write("landing/train/glioma (1).jpg", jpeg(1))

    with pytest.raises(UnsafePathError, match=r"landing/train/\.parked is a symbolic link"):
        storage.park("landing/train/glioma (1).jpg", "failed 3 times")
    assert files_below(outside) == {"glioma (1).jpg": SECRET}


def test_a_private_folder_linked_inside_the_root_is_refused_too(local_root):
    """A link that stays inside the root is still not the mover's folder: a marker or claim there
    could overwrite raw/ images."""
    storage = get_storage()
    storage.write("raw/train/glioma (1).jpg", jpeg(9))
    os.symlink(local_root / "raw/train", local_root / "landing/train/.parked")

    with pytest.raises(UnsafePathError):
        storage.park("landing/train/glioma (1).jpg", "failed 3 times")
    assert storage.read("raw/train/glioma (1).jpg") == jpeg(9)


def test_no_key_reaches_through_a_symlinked_folder(local_root, outside):
    storage = get_storage()
    os.symlink(outside, local_root / "landing/train/inside")

    with pytest.raises(UnsafePathError, match="outside the storage root"):
        storage.read("landing/train/inside/glioma (1).jpg")
    with pytest.raises(UnsafePathError, match="outside the storage root"):
        storage.delete("landing/train/inside/glioma (1).jpg")
    assert files_below(outside) == {"glioma (1).jpg": SECRET}


def test_a_symlinked_subfolder_in_landing_is_not_listed(local_root, outside):
    storage = get_storage()
    os.symlink(outside, local_root / "landing/train/inside")
    storage.write("landing/train/glioma (3).jpg", jpeg(3))

    assert keys(storage, "landing/train") == ["landing/train/glioma (3).jpg"]
    assert ingest_file(storage, "landing/train/glioma (3).jpg", "train").outcome == "moved"
    assert files_below(outside) == {"glioma (1).jpg": SECRET}
