"""The locked stack imports together, at the locked versions (one fresh interpreter)."""

import json
import re
import subprocess
import sys
from pathlib import Path

LOCK = (Path(__file__).resolve().parents[2] / "requirements-lock.txt").read_text()
PACKAGES = {  # distribution -> module
    "apache-airflow": "airflow",
    "astro-sdk-python": "astro",
    "duckdb": "duckdb",
    "great-expectations": "great_expectations",
    "transformers": "transformers",
    "torch": "torch",
    "pyarrow": "pyarrow",
    "pandas": "pandas",
    "numpy": "numpy",
    "nilearn": "nilearn",
    "psycopg2-binary": "psycopg2",
}


def test_every_pinned_package_imports_at_its_locked_version():
    script = (
        "import importlib, importlib.metadata as md, json, sys\n"
        "names = json.loads(sys.argv[1])\n"
        "for module in names.values(): importlib.import_module(module)\n"
        "print(json.dumps({d: md.version(d) for d in names}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(PACKAGES)], capture_output=True, text=True, check=True
    )
    installed = json.loads(out.stdout.strip().splitlines()[-1])
    locked = {d: re.search(rf"^{re.escape(d)}==(\S+)", LOCK, flags=re.M | re.I)[1] for d in PACKAGES}
    assert installed == locked
