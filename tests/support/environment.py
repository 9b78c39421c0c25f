"""The settings a test runs under, set through pytest's ``monkeypatch`` (undone after the test) and
read afresh; and the registries several test files start from, built on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from include.config import settings
from include.db import RegistryDatabase, get_database
from include.db.migrations import apply_migrations


def use(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """Set the environment variables ``env`` for this test and read the settings afresh."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()


def gate_registry(db_conn_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> RegistryDatabase:
    """The backend under test, migrated, with a local store and the quality and notification folders
    in the test's folder and two images a class enough for the gate; ``env`` adds settings."""
    use(
        monkeypatch,
        AIRFLOW_VAR_MRI_DB_CONN_ID=db_conn_id,
        MRI_STORAGE_ROOT=str(tmp_path / "storage"),
        MRI_QUALITY_DIR=str(tmp_path / "quality"),
        MRI_NOTIFICATIONS_DIR=str(tmp_path / "notifications"),
        MRI_QUALITY_MIN_IMAGES_PER_CLASS="2",
        **env,
    )
    db = get_database(db_conn_id)
    apply_migrations(db)
    return db


def training_registry(
    db_conn_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sweep: list[dict], **env: str
) -> tuple[RegistryDatabase, Any, Path]:
    """What the ML DAGs' tests run on: the backend under test (migrated), a local store, a tiny base
    checkpoint as the model source, the test's own models, evaluations, notifications and production
    folders, and short training on 32 px images and one thread; ``sweep`` is MRI_TRAIN_SWEEP and
    ``env`` adds settings (the epochs, the labels). Returns ``(db, storage, tmp_path)``."""
    import torch

    from include.ml.bundle import save_model
    from include.ml.source import build_processor
    from include.storage import get_storage
    from tests.support.tiny_models import tiny_resnet

    torch.manual_seed(0)
    base = tmp_path / "base-checkpoint"
    save_model(tiny_resnet(seed=0), build_processor(32), base, {})
    use(
        monkeypatch,
        AIRFLOW_VAR_MRI_DB_CONN_ID=db_conn_id,
        MRI_STORAGE_ROOT=str(tmp_path / "storage"),
        MRI_MODEL_SOURCE=str(base),
        MRI_MODELS_DIR=str(tmp_path / "models"),
        MRI_EVALUATIONS_DIR=str(tmp_path / "evaluations"),
        MRI_NOTIFICATIONS_DIR=str(tmp_path / "notifications"),
        MRI_PRODUCTION_DIR=str(tmp_path / "production"),
        MRI_TRAIN_BATCH_SIZE="8",
        MRI_TRAIN_IMAGE_SIZE="32",
        MRI_TRAIN_SWEEP=json.dumps(sweep),
        MRI_TORCH_THREADS="1",
        **env,
    )
    db = get_database(db_conn_id)
    apply_migrations(db)
    return db, get_storage(), tmp_path
