"""Moving up keeps history: in one checkout, `make demo` on Airflow 2.11 and then `make demo
AIRFLOW=3` share the registry, the models and the production bundle (each major its own Airflow
home); the second says "nothing new to ingest" and keeps production. Both run through the
Makefile, as a user types them."""

import json
import os
import subprocess

import pytest

from include.config import PROJECT_ROOT
from launcher.phantom import PhantomConfig, generate_dataset
from tests.support.demo import TINY_DEMO_SETTINGS, demo_folders, registry_at


def make_demo(major: str, env: dict, demo_args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-C", str(PROJECT_ROOT), "demo", f"AIRFLOW={major}", f"DEMO_ARGS={demo_args}"],
        env=env,
        capture_output=True,
        text=True,
    )


def production_state(root) -> tuple:
    """What is served: the release ``current`` points at, and the registry's production model."""
    import duckdb

    current = root / "production" / "current"
    with duckdb.connect(str(root / "mri.duckdb"), read_only=True) as db:
        models = db.execute("SELECT model_id, stage FROM models ORDER BY model_id").fetchall()
    return (os.readlink(current) if current.is_symlink() else None), models


@pytest.mark.airflow_session("2", reason="it drives both majors through make; the 2.11 session is the shorter one")
def test_make_demo_on_airflow_3_after_2_keeps_the_registry_models_and_production(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MRI_", "MAKE"))}
    env |= demo_folders(tmp_path) | registry_at(tmp_path / "mri.duckdb") | TINY_DEMO_SETTINGS
    phantom = generate_dataset(tmp_path / "phantom", PhantomConfig(per_class=8, slices_per_subject=2, seed=3))

    def demo(major: str) -> tuple[subprocess.CompletedProcess, dict]:
        summary = tmp_path / f"summary-{major}.json"
        home = {"AIRFLOW_HOME": str(tmp_path / f"airflow-{major}")}
        done = make_demo(major, env | home, f"--phantom-dir {phantom} --summary {summary}")
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        return done, json.loads(summary.read_text())

    _, first = demo("2")
    assert first["airflow"] == "2.11.2"
    assert first["registered_now"] > 0 and first["gate_passed"] == {"train": True, "test": True}
    served = production_state(tmp_path)

    second_run, second = demo("3")

    assert second["airflow"] == "3.3.2"
    assert "nothing new to ingest" in second_run.stdout
    assert second["registered_now"] == 0 and second["duplicates"] == first["ingested"]
    assert second["registry"] == first["registry"]
    assert second["promoted_model"] == first["promoted_model"]
    assert production_state(tmp_path) == served  # the same models, stages and served release
