"""The Airflow components the demo and the end-to-end tests start as real processes, and stop."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from include.config import PROJECT_ROOT


@contextmanager
def airflow_services(log_dir: Path) -> Iterator[None]:
    """A scheduler and a triggerer (for the deferrable sensors), stopped when the block ends."""
    log_dir.mkdir(parents=True, exist_ok=True)
    # The executor starts every task as an `airflow tasks run` process: the venv's airflow, and
    # the project importable (`include`), as in an Astro image.
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "airflow", service],
            stdout=open(log_dir / f"{service}.log", "ab"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        for service in ("scheduler", "triggerer")
    ]
    try:
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
