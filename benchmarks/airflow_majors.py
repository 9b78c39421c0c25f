"""Airflow 2.11.2 and 3.3.2 side by side, in one run: the whole demo's wall time, the per-task
overhead (queued -> running, median over the demo's tasks) and the DAG files' parse times.

Each major runs the README's own commands, ``make demo AIRFLOW=N`` and ``make parse-times
AIRFLOW=N``, on the same phantom data set, with everything the demo writes (Airflow home, registry,
storage, models, production) in a fresh folder of its own: neither finds the other's work, so
neither says "nothing new to ingest". Times are printed; the headline keeps the 3.x / 2.x ratios.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from benchmarks.headline import record
from include.config import DATA_DIR, PROJECT_ROOT
from tests.support.demo import demo_folders, registry_at

MAJORS = ("2", "3")
PHANTOM_DIR = DATA_DIR / "phantom"


def make(major: str, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["make", "-s", "-C", str(PROJECT_ROOT), f"AIRFLOW={major}", *args], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"make {' '.join(args)} AIRFLOW={major} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


def measure(major: str, folder: Path) -> dict:
    """The demo's summary and the parse times of one major, everything it writes under ``folder``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MRI_", "MAKE"))}
    env |= demo_folders(folder) | registry_at(folder / "mri.duckdb") | {"AIRFLOW_HOME": str(folder / "airflow")}
    summary = folder / "summary.json"
    make(major, "demo", f"DEMO_ARGS=--phantom-dir {PHANTOM_DIR} --summary {summary}", env=env)
    parse_seconds = json.loads(make(major, "parse-times", "ARGS=--json", env=env).strip().splitlines()[-1])
    return {**json.loads(summary.read_text()), "parse_seconds": parse_seconds}


def main() -> None:
    make("2", "phantom", env=dict(os.environ))
    results = {}
    for major in MAJORS:
        with tempfile.TemporaryDirectory(prefix=f"bench-airflow{major}-") as folder:
            results[major] = measure(major, Path(folder))
    old, new = results["2"], results["3"]
    rows = {
        "`make demo` wall time, s": (old["wall_seconds"], new["wall_seconds"]),
        "queued -> running, median over the demo's tasks, s": (
            old["task_start_median_seconds"],
            new["task_start_median_seconds"],
        ),
        "slowest DAG file parse, s": (max(old["parse_seconds"].values()), max(new["parse_seconds"].values())),
        "fine-tuned ROC AUC": ((old["fine_tuned"] or {}).get("roc_auc"), (new["fine_tuned"] or {}).get("roc_auc")),
    }
    print(f"\nAirflow {old['airflow']} and {new['airflow']}, the same demo and DAG files, one run\n")
    print(f"| | {old['airflow']} | {new['airflow']} | 3.x / 2.x |")
    print("|---|---:|---:|---:|")
    for what, (a, b) in rows.items():
        ratio = f"{b / a:.2f}" if a and b is not None else "-"
        print(f"| {what} | {a} | {b} | {ratio} |")
    record(
        "airflow_majors",
        [
            (f"{what.rsplit(',', 1)[0]}: {new['airflow']} / {old['airflow']}", f"{b / a:.2f}", "-")
            for what, (a, b) in list(rows.items())[:3]
            if a and b is not None
        ],
    )


if __name__ == "__main__":
    main()
