"""A demo of its own, for an end-to-end test or a benchmark: every folder the demo writes moved
under one root, and settings sized for a handful of images."""

from __future__ import annotations

import json
from pathlib import Path

# The setting of each folder the demo writes, and its name under the root.
DEMO_FOLDERS = {
    "MRI_STORAGE_ROOT": "storage",
    "MRI_MODELS_DIR": "models",
    "MRI_PRODUCTION_DIR": "production",
    "MRI_EVALUATIONS_DIR": "evaluations",
    "MRI_QUALITY_DIR": "quality",
    "MRI_NOTIFICATIONS_DIR": "notifications",
}
TINY_SWEEP = [{"learning_rate": 0.002}, {"learning_rate": 0.001}]
# A handful of images: thresholds and the model sized for them.
TINY_DEMO_SETTINGS = {
    "MRI_SENSOR_POKE_SECONDS": "2",
    "MRI_QUALITY_MIN_IMAGES_PER_CLASS": "2",
    "MRI_QUALITY_MAX_QUARANTINE_RATE": "0.5",
    "MRI_TRAIN_EPOCHS": "2",
    "MRI_TRAIN_IMAGE_SIZE": "32",
    "MRI_TRAIN_SWEEP": json.dumps(TINY_SWEEP),
    # One torch thread: CI runs the two suites side by side, and two threads waiting on each other
    # on a busy machine trained a demo 5 to 10 times slower (27 against 161 images/s measured).
    "MRI_TORCH_THREADS": "1",
}


def demo_folders(root: Path) -> dict[str, str]:
    """The folder settings of a demo that writes only under ``root``."""
    return {name: str(root / folder) for name, folder in DEMO_FOLDERS.items()}


def registry_at(path: Path) -> dict[str, str]:
    """The connection of the default registry (``mri_db``, DuckDB) pointed at the file ``path``."""
    return {"AIRFLOW_CONN_MRI_DB": json.dumps({"conn_type": "duckdb", "host": str(path)})}
