"""Taking back a misplaced upload, on DuckDB and a real PostgreSQL: a test image dropped into train
fails both gates; retracting it marks its row (never deletes it), moves its bytes to quarantine/,
emits both splits' Datasets, and both gates pass again."""

import re
import shlex
import subprocess

import pytest
from airflow.utils.state import DagRunState, TaskInstanceState

from include.config import PROJECT_ROOT, settings
from include.db import get_database
from include.db.migrations import apply_migrations
from include.ingestion.mover import ingest_file
from include.quality.dag import build_quality_gate_dag
from include.registry.dag import build_retract_dag
from include.registry.records import unregistered
from include.registry.retract import RetractionRefused, retract_upload
from include.registry.snapshots import passed_snapshot
from include.storage import get_storage
from include.wiring.datasets import IMAGES
from tests.integration.test_quality_gate import failure_message
from tests.support.environment import gate_registry
from tests.support.metadata import dataset_events, register
from tests.support.uploads import encoded, head, upload

# Four distinct pictures per split, two per class; the misplaced file is test's first, again in train.
PICTURES = {
    "train": {"glioma (1).png": 10, "glioma (2).png": 11, "meningioma (1).png": 12, "meningioma (2).png": 13},
    "test": {"glioma (1).png": 20, "glioma (2).png": 21, "meningioma (1).png": 22, "meningioma (2).png": 23},
}
MISPLACED = "glioma (9).png"
WHY = "a test image dropped into train"


@pytest.fixture
def registry(db_conn_id, tmp_path, monkeypatch):
    """Both splits registered from real files, then the misplaced upload: (db, storage, its uri)."""
    db = gate_registry(db_conn_id, tmp_path, monkeypatch)
    for split, pictures in PICTURES.items():
        for name, seed in pictures.items():
            upload(db, split, name, encoded(head(seed)), f"upload-{split}")
    misplaced = upload(db, "train", MISPLACED, encoded(head(20)), "upload-late")
    yield db, get_storage(), misplaced
    settings.cache_clear()


def gate(split: str) -> DagRunState:
    return register(build_quality_gate_dag(split, "t")).test().state


def retract_dag_run(**conf):
    run = register(build_retract_dag("t")).test(run_conf=conf)
    return run, run.get_task_instance("retract")


def retraction_row(db, uri: str) -> tuple:
    [row] = db.fetch_all(
        "SELECT retracted_by, retraction_reason, retracted_at IS NOT NULL, quarantined_as FROM image_files "
        f"WHERE uri = {db.placeholder}",
        (uri,),
    )
    return row


def test_a_retracted_upload_leaves_both_gates_and_its_file_moves_to_quarantine(registry):
    db, storage, misplaced = registry
    assert (gate("train"), gate("test")) == (DagRunState.FAILED, DagRunState.FAILED)  # leakage
    [(files,)] = db.fetch_all("SELECT COUNT(*) FROM image_files")

    run, ti = retract_dag_run(uri=misplaced, reason=WHY, retracted_by="ops")

    assert run.state == DagRunState.SUCCESS
    quarantined = storage.uri(f"quarantine/train/{MISPLACED}")
    assert retraction_row(db, misplaced) == ("ops", WHY, True, quarantined)
    assert db.fetch_all("SELECT COUNT(*) FROM image_files") == [(files,)]  # marked, never deleted
    # The bytes moved; a note holding the reason keeps the name taken in raw/.
    assert storage.read(storage.key(quarantined)) == encoded(head(20))
    note = storage.read(f"raw/train/{MISPLACED}").decode()
    assert WHY in note and quarantined in note
    assert [dataset_events(IMAGES[split].uri, [run.run_id]) for split in ("train", "test")] == [1, 1]

    assert (gate("train"), gate("test")) == (DagRunState.SUCCESS, DagRunState.SUCCESS)
    assert misplaced not in {image.uri for image in passed_snapshot(db, "train").images}
    assert len(passed_snapshot(db, "train").images) == len(PICTURES["train"])


def test_retracting_again_keeps_the_first_who_why_and_when(registry):
    db, storage, misplaced = registry
    retract_upload(db, storage, misplaced, "ops", WHY)
    first, note = db.fetch_all("SELECT * FROM image_files"), storage.read(f"raw/train/{MISPLACED}")

    again = retract_upload(db, storage, misplaced, "someone else", "another reason")

    assert again.already and (again.retracted_by, again.reason) == ("ops", WHY)
    assert db.fetch_all("SELECT * FROM image_files") == first
    assert storage.read(f"raw/train/{MISPLACED}") == note


def test_a_new_upload_under_a_retracted_name_is_registered_under_a_name_of_its_own(registry):
    db, storage, misplaced = registry
    retract_upload(db, storage, misplaced, "ops", WHY)
    storage.write(f"landing/train/{MISPLACED}", encoded(head(30)))

    moved = ingest_file(storage, f"landing/train/{MISPLACED}", "train")

    assert moved.outcome == "moved" and moved.destination != f"raw/train/{MISPLACED}"
    assert unregistered(db, [storage.uri(moved.destination)]) == [storage.uri(moved.destination)]


def test_an_unknown_uri_fails_at_once_naming_it(registry):
    db, storage, _ = registry
    unknown = storage.uri("raw/train/nobody (1).png")

    run, ti = retract_dag_run(uri=unknown, reason=WHY, retracted_by="ops")

    assert run.state == DagRunState.FAILED and ti.state == TaskInstanceState.FAILED
    assert ti.try_number == 1 and ti.max_tries == 3  # a refusal is not retried
    with pytest.raises(RetractionRefused, match=r"'.*nobody \(1\).png' is no file the registry holds.*gate's"):
        retract_upload(db, storage, unknown, "ops", WHY)
    with pytest.raises(RetractionRefused, match="needs the file's uri, who retracts it and why"):
        retract_upload(db, storage, unknown, "ops", " ")


@pytest.fixture
def duckdb_registry(duckdb_conn_id, tmp_path, monkeypatch):
    """An empty DuckDB registry and a local store, through the settings a `make` command reads."""
    monkeypatch.setenv("AIRFLOW_VAR_MRI_DB_CONN_ID", duckdb_conn_id)
    monkeypatch.setenv("MRI_STORAGE_ROOT", str(tmp_path / "storage"))
    settings.cache_clear()
    db = get_database(duckdb_conn_id)
    apply_migrations(db)
    yield db
    settings.cache_clear()


def test_the_command_the_gate_prints_takes_the_upload_back_with_names_a_shell_would_run(
    duckdb_registry, tmp_path, monkeypatch
):
    """The gate's message, run verbatim through bash with only the reason filled in: `make retract`
    passes the values to the DAG in the environment, never as shell words."""
    db = duckdb_registry
    monkeypatch.setenv("MRI_NOTIFICATIONS_DIR", str(tmp_path / "notifications"))
    monkeypatch.setenv("MRI_QUALITY_DIR", str(tmp_path / "quality"))
    settings.cache_clear()
    upload(db, "test", "glioma (1).png", encoded(head(20)), "upload-test")
    uri = upload(db, "train", "glioma (9) $(touch pwned) 'x'.png", encoded(head(20)), "upload-late")
    assert gate("train") == DagRunState.FAILED
    [command] = re.findall(r"make retract URI=.*? REASON='<why>'", failure_message(tmp_path, "train"))
    assert shlex.split(command)[2] == f"URI={uri}".replace("$", "$$")

    done = subprocess.run(
        ["bash", "-c", command.replace("'<why>'", f"'{WHY}' BY=ops")], capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    usage = subprocess.run(["make", "-C", str(PROJECT_ROOT), "retract", f"URI={uri}"], capture_output=True, text=True)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert retraction_row(db, uri)[:3] == ("ops", WHY, True)
    assert not (tmp_path / "pwned").exists() and not (PROJECT_ROOT / "pwned").exists()
    assert usage.returncode != 0 and "make retract URI=" in usage.stderr
