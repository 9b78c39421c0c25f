"""DAG file parse times, each file in a fresh interpreter with Airflow's core loaded, as the
scheduler's DAG processor parses it (the same script as the DAG integrity test). Prints a Markdown
table and records the slowest file against the 0.5 s goal (a goal of Airflow's best practices:
parsing is paid by the scheduler on every loop). ``--json``: only the seconds per file, as one JSON
line (``make parse-times AIRFLOW=N ARGS=--json``, read by ``benchmarks.airflow_majors``)."""

from __future__ import annotations

import json
import os
import sys

from benchmarks.headline import record
from tests.unit.test_dag_integrity import DAG_FILES, parse_dag_file

GOAL_SECONDS = 0.5


def main() -> None:
    seconds = {path.name: parse_dag_file(path)["seconds"] for path in DAG_FILES}
    if "--json" in sys.argv[1:]:
        print(json.dumps(seconds))
        return
    print(f"\nDAG file parse times, fresh interpreter each, {os.cpu_count()} CPUs\n")
    print("| DAG file | s | / 0.5 s goal |")
    print("|---|---:|---:|")
    for name, value in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"| `{name}` | {value:.2f} | {value / GOAL_SECONDS:.1f} |")
    slowest = max(seconds, key=seconds.get)
    fastest = min(seconds, key=seconds.get)
    record(
        "parse_times",
        [
            (f"slowest DAG file (`{slowest}`) / 0.5 s", f"{seconds[slowest] / GOAL_SECONDS:.1f}", "≤ 1"),
            (f"fastest DAG file (`{fastest}`) / 0.5 s", f"{seconds[fastest] / GOAL_SECONDS:.1f}", "≤ 1"),
        ],
    )


if __name__ == "__main__":
    main()
