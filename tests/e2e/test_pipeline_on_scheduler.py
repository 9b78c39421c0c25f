"""The whole event-driven chain on a real Airflow scheduler and triggerer, as `make demo` runs it:
files dropped into landing/ end as a gated data set, trained and evaluated models and a promoted
bundle, with no DAG triggered by hand. Asserts on the tables and the summary JSON, not on time."""

import json

from include.config import settings
from include.db import get_database
from include.demo import STRAY_FILES, main
from include.phantom import PhantomConfig, generate_dataset

SWEEP = [{"learning_rate": 0.002}, {"learning_rate": 0.001}]


def test_dropped_files_flow_through_every_dag_to_a_promoted_model(tmp_path, monkeypatch):
    for name, folder in {
        "MRI_STORAGE_ROOT": "storage",
        "MRI_MODELS_DIR": "models",
        "MRI_PRODUCTION_DIR": "production",
        "MRI_EVALUATIONS_DIR": "evaluations",
        "MRI_QUALITY_DIR": "quality",
        "MRI_NOTIFICATIONS_DIR": "notifications",
    }.items():
        monkeypatch.setenv(name, str(tmp_path / folder))
    # A handful of images: thresholds and the model sized for them.
    monkeypatch.setenv("MRI_SENSOR_POKE_SECONDS", "2")
    monkeypatch.setenv("MRI_QUALITY_MIN_IMAGES_PER_CLASS", "2")
    monkeypatch.setenv("MRI_QUALITY_MAX_QUARANTINE_RATE", "0.5")
    monkeypatch.setenv("MRI_TRAIN_EPOCHS", "2")
    monkeypatch.setenv("MRI_TRAIN_IMAGE_SIZE", "32")
    monkeypatch.setenv("MRI_TRAIN_SWEEP", json.dumps(SWEEP))
    settings.cache_clear()
    config = PhantomConfig(per_class=8, seed=3)
    phantom = generate_dataset(tmp_path / "phantom", config)
    summary_path = tmp_path / "summary.json"
    monkeypatch.setattr("sys.argv", ["demo", "--phantom-dir", str(phantom), "--summary", str(summary_path)])

    assert main() == 0

    summary = json.loads(summary_path.read_text())
    # Every stray file ends in quarantine: text and empty at ingestion, the rest at the registry.
    assert summary["quarantined"] == len(STRAY_FILES)
    assert summary["registry"] == {
        "train": {"registered": 2 * (config.per_class - config.test_count), "quarantined": 2},
        "test": {"registered": 2 * config.test_count},
    }
    assert summary["gate_passed"] == {"train": True, "test": True}
    assert summary["baseline"]["model_id"] != summary["fine_tuned"]["model_id"]
    assert summary["promoted_model"] == summary["fine_tuned"]["model_id"]
    assert (tmp_path / "production" / "current").is_dir()
    db = get_database()
    roles = dict(db.fetch_all("SELECT role, COUNT(*) FROM models GROUP BY role"))
    assert roles == {"baseline": 1, "fine_tuned": len(SWEEP)}
    assert db.fetch_all("SELECT COUNT(*) FROM models WHERE stage = 'production'") == [(1,)]
    # Every model was evaluated on the gated test snapshot, once.
    assert db.fetch_all(
        "SELECT COUNT(DISTINCT model_id), COUNT(*) FROM model_results WHERE test_snapshot = ?",
        (summary["test_snapshot"],),
    ) == [(1 + len(SWEEP), 1 + len(SWEEP))]
    settings.cache_clear()
