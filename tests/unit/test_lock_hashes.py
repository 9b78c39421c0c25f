"""The locks pin every file by its sha256, and every install requires those hashes (issue 19, item 8).

With hashes required, a file whose bytes are not one the lock lists for it is refused, whichever
index or wheel folder it comes from. That is what makes PyTorch's extra index safe: pip cannot
restrict an index to one package, but it can refuse every file the lock does not name.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCKS = (
    "requirements-lock.txt",
    "requirements-dev-lock.txt",
    "requirements-airflow3-lock.txt",
    "requirements-airflow3-dev-lock.txt",
)
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}(?=\s|$)")


def logical_lines(text: str) -> list[str]:
    """The lines as pip, uv, make and Docker read them: backslash continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = (re.sub(r"(?:^|\s)#.*", "", line).strip() for line in joined.splitlines())
    return [line for line in lines if line]


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_package_carries_its_hashes(lock):
    requirements = logical_lines((ROOT / lock).read_text())
    assert len(requirements) > 100, f"{lock}: {len(requirements)} requirement lines, expected the whole resolved set"
    unpinned = [line.split()[0] for line in requirements if not re.match(r"^[A-Za-z0-9][\w.-]*==\S+(\s|$)", line)]
    assert not unpinned, f"{lock}: hash-checking mode needs every requirement pinned with ==: {unpinned[:5]}"
    unhashed = [line.split()[0] for line in requirements if not HASH.search(line)]
    assert not unhashed, (
        f"{lock}: {len(unhashed)} of {len(requirements)} packages have no --hash=sha256 "
        f"(e.g. {unhashed[:3]}); re-lock with `make lock`, which passes --generate-hashes"
    )
    torch = [line for line in requirements if line.startswith("torch==")]
    assert torch and torch[0].startswith("torch==2.13.0+cpu ") and HASH.search(torch[0]), torch


def test_uv_itself_is_pinned_by_hash():
    requirements = logical_lines((ROOT / "requirements-uv-lock.txt").read_text())
    assert len(requirements) == 1 and re.match(r"^uv==\S+ ", requirements[0]), requirements
    assert len(HASH.findall(requirements[0])) > 1, "one hash per file of that uv release on PyPI"


def commands(text: str, needle: str) -> list[str]:
    found = [line for line in logical_lines(text) if needle in line]
    assert found, f"no `{needle}` command found"
    return found


def test_make_install_requires_hashes_and_make_lock_generates_them():
    """uv installs the lock by hash, and pip installs uv by hash first: the checker is checked too."""
    makefile = (ROOT / "Makefile").read_text()
    installs = commands(makefile, "pip install")
    assert any("uv pip install" in command for command in installs), installs
    for command in installs:
        assert "--require-hashes" in command.split(), f"make installs without --require-hashes: {command}"
    for command in commands(makefile, "uv pip compile"):
        assert "--generate-hashes" in command.split(), f"make lock writes a lock without hashes: {command}"


def test_the_image_installs_its_lock_with_hashes_required():
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = commands(dockerfile, "pip install")
    assert any("-r /opt/airflow/${REQUIREMENTS}" in command for command in installs), installs
    for command in installs:
        assert "--require-hashes" in command.split(), f"the image installs without --require-hashes: {command}"
