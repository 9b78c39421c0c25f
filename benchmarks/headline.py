"""The headline ratio of every benchmark in one Markdown table (the last step of ``make bench``).

Each benchmark prints its own detailed tables and calls :func:`record` with its few headline
rows; ``python -m benchmarks.headline`` prints them together with the date and the machine, ready
for the README. Ratios measured within one run, never bare times: this machine's timings are noisy.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import date
from pathlib import Path

from include.config import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "reports" / "bench"
# The last `make demo`'s summary: its wall time is the demo's row.
DEMO_SUMMARY = PROJECT_ROOT / "reports" / "demo_summary.json"


def record(benchmark: str, rows: list[tuple[str, str, str]]) -> Path:
    """Keep ``benchmark``'s headline rows: (what was compared, the measured ratio or rate, the goal).

    :param benchmark: the module's name, e.g. ``registry_writes``.
    :param rows: one tuple per headline: what, measured, goal ('-' when there is none).
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{benchmark}.json"
    path.write_text(json.dumps({"benchmark": benchmark, "date": date.today().isoformat(), "rows": rows}, indent=2))
    return path


def machine() -> str:
    return f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}"


def main() -> None:
    results = [json.loads(p.read_text()) for p in sorted(RESULTS_DIR.glob("*.json"))]
    if not results:
        raise SystemExit(f"No benchmark results in {RESULTS_DIR}; run `make bench`.")
    dates = sorted({r["date"] for r in results})
    print(f"\nMeasured {', '.join(dates)} on {machine()}; ratios within one run.\n")
    print("| benchmark | what | measured | goal |")
    print("|---|---|---:|---|")
    for result in results:
        for what, measured, goal in result["rows"]:
            print(f"| `{result['benchmark']}` | {what} | {measured} | {goal} |")
    if DEMO_SUMMARY.exists():
        demo = json.loads(DEMO_SUMMARY.read_text())
        ratio = demo["wall_seconds"] / 600
        print(f"| `make demo` | wall time / 10 min goal (until {demo['until']}) | {ratio:.2f} | ≤ 1 |")


if __name__ == "__main__":
    main()
