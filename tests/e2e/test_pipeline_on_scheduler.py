"""The event-driven pipeline on a real Airflow scheduler and triggerer, as `make demo` runs it:
files dropped into landing/ end up in the registry with no DAG triggered by hand."""

import json

from include.config import settings
from include.demo import STRAY_FILES, main
from include.phantom import PhantomConfig, generate_dataset


def test_dropped_files_reach_the_registry_through_sensors_and_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("MRI_STORAGE_ROOT", str(tmp_path / "storage"))
    monkeypatch.setenv("MRI_SENSOR_POKE_SECONDS", "2")
    settings.cache_clear()
    config = PhantomConfig(per_class=6, seed=3)
    phantom = generate_dataset(tmp_path / "phantom", config)
    summary_path = tmp_path / "summary.json"
    argv = ["demo", "--phantom-dir", str(phantom), "--until", "registry", "--summary", str(summary_path)]
    monkeypatch.setattr("sys.argv", argv)

    assert main() == 0

    summary = json.loads(summary_path.read_text())
    # Every stray file ends in quarantine: text and empty at ingestion, the rest at the registry.
    assert summary["quarantined"] == len(STRAY_FILES)
    assert summary["ingested"] == 2 * config.per_class + len(STRAY_FILES) - 2
    assert summary["registry"] == {
        "train": {"registered": 2 * (config.per_class - config.test_count), "quarantined": 2},
        "test": {"registered": 2 * config.test_count},
    }
    settings.cache_clear()
