"""A failed quality gate stops the chain there, as `make demo` runs it (on either major): the demo
prints each failed expectation with its observed value and exits 1; nothing is trained or served."""

import json
import os
import subprocess
import sys

from include.config import PROJECT_ROOT, settings
from include.db import get_database
from launcher.phantom import PhantomConfig, generate_dataset
from tests.support.demo import TINY_DEMO_SETTINGS, demo_folders, registry_at


def test_a_failed_gate_stops_the_demo_with_its_reasons_and_exit_code_1(tmp_path, monkeypatch):
    too_few = TINY_DEMO_SETTINGS | {"MRI_QUALITY_MIN_IMAGES_PER_CLASS": "50"}  # the phantom makes 4 per class
    for name, value in (demo_folders(tmp_path) | registry_at(tmp_path / "mri.duckdb") | too_few).items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    phantom = generate_dataset(tmp_path / "phantom", PhantomConfig(per_class=4, seed=5))
    summary_path = tmp_path / "summary.json"

    done = subprocess.run(
        [sys.executable, "-m", "launcher.demo", "--phantom-dir", str(phantom), "--summary", str(summary_path)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        cwd=PROJECT_ROOT,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-5000:]
    assert "quality_gate_train     run failed" in output
    assert "expect_column_min_to_be_between(smallest_class_images)" in output
    assert "MRI_QUALITY_MIN_IMAGES_PER_CLASS=50" in output
    assert "The quality gate did not pass" in output
    assert json.loads(summary_path.read_text())["gate_passed"] == {"train": False, "test": False}
    assert get_database().fetch_all("SELECT COUNT(*) FROM models") == [(0,)]
    assert not (tmp_path / "production" / "current").exists()
