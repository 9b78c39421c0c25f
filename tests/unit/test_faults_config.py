"""Settings that meant different things in different processes (issue 7)."""

from include.config import PROJECT_ROOT, load_settings


def test_a_relative_storage_root_means_the_same_folder_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the triggerer, a worker and `make` each start somewhere else
    root = load_settings({"MRI_STORAGE_ROOT": "data/storage"}).storage_root
    assert root == str(PROJECT_ROOT / "data" / "storage")


def test_an_absolute_or_remote_storage_root_is_kept():
    assert load_settings({"MRI_STORAGE_ROOT": "/srv/mri/"}).storage_root == "/srv/mri"
    assert load_settings({"MRI_STORAGE_ROOT": "s3://bucket/mri"}).storage_root == "s3://bucket/mri"


def test_attempts_before_quarantine_and_the_batch_timeout_are_settings():
    settings = load_settings({"MRI_INGEST_ATTEMPTS": "5", "MRI_BATCH_TIMEOUT_MINUTES": "7"})
    assert (settings.ingest_attempts, settings.batch_timeout_minutes) == (5, 7)
