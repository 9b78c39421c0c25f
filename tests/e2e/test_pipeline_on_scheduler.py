"""The event-driven pipeline on a real Airflow scheduler and triggerer, as `make demo` runs it:
files dropped into landing/ end up in the registry with no DAG triggered by hand."""

from include.config import settings
from include.demo import NOT_IMAGES, run
from include.phantom import PhantomConfig, generate_dataset


def test_dropped_files_reach_the_registry_through_sensors_and_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("MRI_STORAGE_ROOT", str(tmp_path / "storage"))
    monkeypatch.setenv("MRI_SENSOR_POKE_SECONDS", "2")
    settings.cache_clear()
    phantom = generate_dataset(tmp_path / "phantom", PhantomConfig(per_class=6, seed=3))

    seen, report = run(phantom, timeout=600)

    assert seen["train"]["ingest_quarantined"] == len(NOT_IMAGES)
    assert seen["train"]["registry_registered"] == 2 * (6 - PhantomConfig(per_class=6).test_count)
    assert seen["test"]["registry_registered"] == 2 * PhantomConfig(per_class=6).test_count
    rows = {(split, status, label): n for split, status, label, n in report}
    assert rows[("train", "registered", "glioma")] == rows[("train", "registered", "meningioma")]
    assert rows[("test", "leaked", "-")] == 0
    settings.cache_clear()
