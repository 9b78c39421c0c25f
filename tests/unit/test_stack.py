"""The locked stack of the running Airflow major imports together, at the locked versions (one fresh
interpreter): Airflow 2.11.2 with the Astro SDK, or Airflow 3.3.2 with the official DuckDB provider."""

import json
import re
import subprocess
import sys
from pathlib import Path

from include.wiring.compat import AIRFLOW_V_3_0_PLUS

LOCK_FILE = "requirements-airflow3-lock.txt" if AIRFLOW_V_3_0_PLUS else "requirements-lock.txt"
LOCK = (Path(__file__).resolve().parents[2] / LOCK_FILE).read_text()
PACKAGES = {  # distribution -> module
    "apache-airflow": "airflow",
    **({"apache-airflow-providers-duckdb": "airflow.providers.duckdb"} if AIRFLOW_V_3_0_PLUS else {}),
    **({} if AIRFLOW_V_3_0_PLUS else {"astro-sdk-python": "astro"}),
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


def test_the_default_stack_is_airflow_2_11_on_its_last_patch_with_the_astro_sdk():
    default = (Path(__file__).resolve().parents[2] / "requirements-lock.txt").read_text()
    assert re.search(r"^apache-airflow==2\.11\.2(?= |$)", default, re.M)
    assert re.search(r"^astro-sdk-python==1\.9\.0(?= |$)", default, re.M)
    airflow3 = (Path(__file__).resolve().parents[2] / "requirements-airflow3-lock.txt").read_text()
    assert re.search(r"^apache-airflow==3\.3\.2(?= |$)", airflow3, re.M) and "astro-sdk-python" not in airflow3
