"""The whole event-driven chain on real Airflow components, as `make demo` runs it (on either major):
files dropped into landing/ end as a gated data set, trained and evaluated models and a promoted
bundle, with no DAG triggered by hand. The scheduler is killed (SIGKILL) while a fine-tune task of
the sweep runs; the demo says so, stops, and leaves no process of it running, and a second demo
finishes the job with no duplicate row and no lost file. Asserts on the tables, the folders and the
summary JSON, not on time."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from include.config import PROJECT_ROOT, settings
from include.db import get_database
from launcher.demo import STRAY_FILES, main
from launcher.phantom import PhantomConfig, generate_dataset
from launcher.services import session_members
from tests.support.demo import TINY_DEMO_SETTINGS, TINY_SWEEP, demo_folders


def files_under(folder) -> int:
    return sum(1 for path in folder.rglob("*") if path.is_file())


def writes_fine_tune_log(process: psutil.Process) -> bool:
    """Whether ``process`` holds a fine_tune task's log open: the task runner's fork on Airflow 2,
    the task's supervisor on Airflow 3 (whose process titles name only the task instance's id)."""
    return any("dag_id=train_model" in f.path and "task_id=fine_tune" in f.path for f in process.open_files())


def wait_for_fine_tune_runner(demo: subprocess.Popen, log: Path, timeout: float = 600) -> psutil.Process:
    """The demo's scheduler, once a fine-tune task runs under it (a process of its tree writes the task's log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert demo.poll() is None, f"the demo ended before training:\n{log.read_text()}"
        with contextlib.suppress(psutil.Error):  # a process that ended while we looked
            for scheduler in psutil.Process(demo.pid).children():
                if "scheduler" in scheduler.cmdline() and any(
                    writes_fine_tune_log(task) for task in scheduler.children(recursive=True)
                ):
                    return scheduler
        time.sleep(0.1)
    raise TimeoutError(f"no fine_tune task ran:\n{log.read_text()}")


def test_a_demo_killed_while_training_is_finished_by_the_next_one(tmp_path, monkeypatch):
    for name, value in (demo_folders(tmp_path) | TINY_DEMO_SETTINGS).items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    config = PhantomConfig(per_class=8, slices_per_subject=2, seed=3)
    phantom = generate_dataset(tmp_path / "phantom", config)
    summary_path = tmp_path / "summary.json"
    demo_args = ["--phantom-dir", str(phantom), "--summary", str(summary_path)]

    first_log = tmp_path / "first_demo.log"
    with first_log.open("w") as out:
        first = subprocess.Popen(
            [sys.executable, "-m", "launcher.demo", *demo_args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            cwd=PROJECT_ROOT,
        )
    try:
        scheduler = wait_for_fine_tune_runner(first, first_log)
        scheduler.kill()
        first.wait(timeout=120)
    finally:
        if first.poll() is None:  # the test failed: stop that demo's components as Ctrl-C would
            first.send_signal(signal.SIGINT)
            first.wait(timeout=120)
    output = first_log.read_text()

    assert first.returncode == 1, output
    assert "The scheduler stopped (killed by signal 9)" in output
    assert "`make demo` again resumes" in output
    assert session_members(scheduler.pid) == []  # no task of the dead scheduler runs on
    assert not summary_path.exists()

    monkeypatch.setattr("sys.argv", ["demo", *demo_args])
    assert main() == 0

    summary = json.loads(summary_path.read_text())
    # Every stray file ends in quarantine: text and empty at ingestion, the rest at the registry.
    assert summary["registry"] == {
        "train": {"registered": 2 * config.train_count, "quarantined": 2},
        "test": {"registered": 2 * (config.per_class - config.train_count)},
    }
    assert summary["gate_passed"] == {"train": True, "test": True}
    assert summary["baseline"]["model_id"] != summary["fine_tuned"]["model_id"]
    # The deploy decided by its rule on this tiny set (4 test images, which the learned baseline
    # can rank all right): promoted if the fine-tuned model beat the learned baseline by
    # MRI_MIN_GAIN_OVER_BASELINE, else refused saying so. Promotion itself: tests/integration/test_deploy.py.
    gain = summary["fine_tuned"]["roc_auc"] - summary["learned_baseline"]["roc_auc"]
    promoted = gain >= settings().min_gain_over_baseline
    assert summary["promoted_model"] == (summary["fine_tuned"]["model_id"] if promoted else None)
    # Each test score comes with its 95% bootstrap interval.
    for result in (summary["fine_tuned"], summary["baseline"], summary["learned_baseline"]):
        low, high = result["roc_auc_interval"]
        assert low <= result["roc_auc"] <= high
    assert (tmp_path / "production" / "current").is_dir() == promoted
    [(reason,)] = get_database().fetch_all("SELECT reason FROM promotions ORDER BY decided_at DESC LIMIT 1")
    assert promoted or "does not beat the learned baseline" in reason, reason
    # No file lost: every upload is in raw/ or in quarantine, and landing/ is empty.
    uploads = 2 * config.per_class + len(STRAY_FILES)
    storage = tmp_path / "storage"
    assert files_under(storage / "landing") == 0
    assert files_under(storage / "raw") + files_under(storage / "quarantine") == uploads
    db = get_database()
    # No duplicate row: one per file and per content, though every file was uploaded twice.
    assert db.fetch_all("SELECT COUNT(*), COUNT(DISTINCT uri) FROM image_files") == [(uploads - 2, uploads - 2)]
    assert db.fetch_all("SELECT COUNT(*), COUNT(DISTINCT content_hash) FROM images") == [(uploads - 2, uploads - 2)]
    # Every phantom slice carries its subject, from the subject=<id> folder the demo uploads it into.
    assert db.fetch_all("SELECT COUNT(DISTINCT subject), COUNT(subject) FROM image_files") == [
        (2 * config.subjects_per_class, 2 * config.per_class)
    ]
    # The two stray images that pass ingestion are quarantined by the registry, once.
    assert db.fetch_all("SELECT COUNT(*) FROM images WHERE status = 'quarantined'") == [(2,)]
    roles = dict(db.fetch_all("SELECT role, COUNT(*) FROM models GROUP BY role"))
    assert roles == {"baseline": 1, "learned_baseline": 1, "fine_tuned": len(TINY_SWEEP)}
    assert db.fetch_all("SELECT COUNT(*) FROM models WHERE stage = 'production'") == [(int(promoted),)]
    # Every model was evaluated on the gated test snapshot, once (both baselines too).
    assert db.fetch_all(
        "SELECT COUNT(DISTINCT model_id), COUNT(*) FROM model_results WHERE test_snapshot = ?",
        (summary["test_snapshot"],),
    ) == [(2 + len(TINY_SWEEP), 2 + len(TINY_SWEEP))]
    settings.cache_clear()
