"""What can be checked of docker-compose.yaml without a Docker engine: its shape against the Compose
specification's rules we use, the files it references, that its settings are the project's, and
that it ships no open doors (loopback ports, required secrets, least-privilege roles)."""

import json
import re
from urllib.parse import urlsplit

import pytest
import yaml

from include.config import PROJECT_ROOT, Settings, load_settings

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = PROJECT_ROOT / "deploy" / "env.example"
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-webserver",
    "airflow-scheduler",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-worker-training",
}
# Top-level keys the Compose specification allows (plus `x-` extensions).
TOP_LEVEL_KEYS = {"version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models"}
DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# Every secret the deployment needs: each must come from the environment (`.env`), none has a default.
SECRET_VARIABLES = {
    "POSTGRES_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_SECRET_KEY",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "REDIS_PASSWORD",
    "MRI_DB_PASSWORD",
    "_AIRFLOW_WWW_USER_PASSWORD",
    "MINIO_UPLOADER_USER",
    "MINIO_UPLOADER_PASSWORD",
}
# Well-known credentials that must never be a fallback.
WELL_KNOWN_CREDENTIALS = ("minioadmin", "change-me", "changeme", "--password admin", ":-airflow}", ":-admin}")
# The first MinIO releases with the fix for CVE-2026-40344 (and CVE-2025-31489, fixed in 2025): only
# AIStor has them; no release of the community `minio/minio` image does (GHSA-9c4q-hq6p-c237).
MINIO_FIXED_REPOSITORY = "quay.io/minio/aistor/minio"
MINIO_FIRST_FIXED_RELEASE = "2026-04-11T03-20-12Z"
LOOPBACK = "127.0.0.1"


class MissingVariable(Exception):
    pass


_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: `$$`, `$VAR`, `${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:?err}`,
    `${VAR?err}`, `${VAR:+alt}`, `${VAR+alt}` (no nesting: this file uses none)."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op") or "", match.group("arg") or ""
        value = env.get(name)
        unset_or_empty = not value
        if op in (":?", "?") and (unset_or_empty if op == ":?" else value is None):
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and (unset_or_empty if op == ":-" else value is None):
            return arg
        if op in (":+", "+"):
            return "" if (unset_or_empty if op == ":+" else value is None) else arg
        return value or ""

    return _VARIABLE.sub(replace, text)


def required_variables(text: str) -> set[str]:
    """The variables the file refuses to start without (`${VAR:?message}`)."""
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", text))


# One distinct, URL-safe value per required variable, so a test can see where each one ends up.
SENTINELS = {name: f"sentinel-{name.strip('_').lower().replace('_', '-')}" for name in SECRET_VARIABLES}
SENTINELS["MINIO_LICENSE_FILE"] = "./minio.license"


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text) -> dict:
    """The file as `docker compose` would see it with a complete `.env` (the `<<: *anchor` merges resolved)."""
    env = {name: SENTINELS.get(name, f"sentinel-{name.lower()}") for name in required_variables(compose_text)}
    return yaml.safe_load(interpolate(compose_text, env))


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    return dict(item.split("=", 1) for item in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}


def command_text(service: dict) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def test_compose_file_has_the_scale_profile_services(compose):
    assert {"postgres", "redis", "minio"} | AIRFLOW_SERVICES <= set(compose["services"])
    extra = {key for key in compose if not key.startswith("x-")} - TOP_LEVEL_KEYS
    assert not extra, f"not Compose top-level keys: {extra}"
    for name, service in compose["services"].items():
        assert re.fullmatch(r"[a-zA-Z0-9._-]+", name)
        assert "image" in service or "build" in service, name
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in compose["services"], f"{name} depends on unknown {dependency}"
            assert rule["condition"] in DEPENDS_ON_CONDITIONS, (name, rule)


def test_airflow_services_run_the_project_image_on_celery(compose):
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        assert service["image"] == "mri-pipeline:latest", name
        assert environment(service)["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        broker = urlsplit(environment(service)["AIRFLOW__CELERY__BROKER_URL"])
        assert (broker.scheme, broker.hostname) == ("redis", "redis"), name


def test_every_file_the_compose_file_references_exists(compose):
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is not None:
            context = PROJECT_ROOT / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), name
            assert (
                context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            ).is_file()
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):  # a bind mount, not a named volume
                assert (PROJECT_ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose.get("volumes", {}), f"{name} uses undeclared volume {source}"
        for config in service.get("configs", []):
            assert config["source"] in compose.get("configs", {}), name
        for secret in service.get("secrets", []):
            secret = secret if isinstance(secret, str) else secret["source"]
            assert secret in compose.get("secrets", {}), f"{name} uses undeclared secret {secret}"
    for config in compose.get("configs", {}).values():
        assert "content" in config or (PROJECT_ROOT / config["file"]).is_file()


def test_dockerfile_copies_only_what_exists():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    sources = [s for line in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)$", dockerfile, re.M) for s in line.split()[:-1]]
    assert sources and all((PROJECT_ROOT / source).exists() for source in sources), sources


def test_every_project_setting_the_compose_file_sets_is_read_by_the_config(compose):
    defaults = Settings()
    for name, service in compose["services"].items():
        for variable, value in environment(service).items():
            if not variable.startswith(("MRI_", "AIRFLOW_VAR_MRI_")) or variable == "MRI_DB_PASSWORD":
                continue
            # load_settings honours AIRFLOW_VAR_<NAME> and <NAME>: a name it does not read, or a
            # value it rejects, leaves the defaults or raises.
            assert load_settings({variable: value}) != defaults, f"{name}: {variable} is not a setting"


def test_compose_connections_and_queues_match_the_settings(compose):
    for name in AIRFLOW_SERVICES:
        env = environment(compose["services"][name])
        settings = load_settings(env)
        for conn_id in filter(None, (settings.db_conn_id, settings.storage_conn_id)):
            assert f"AIRFLOW_CONN_{conn_id.upper()}" in env, f"{name} lacks connection {conn_id}"
    # The training queue has a worker that serves it, and only that one.
    queue = load_settings(environment(compose["services"]["airflow-worker"])).training_queue
    assert queue == "training"
    served = {
        name: s.get("command", "")
        for name, s in compose["services"].items()
        if "celery worker" in str(s.get("command"))
    }
    assert [name for name, command in served.items() if f"--queues {queue}" in command] == ["airflow-worker-training"]


# --- No open doors ------------------------------------------------------------------------------


def test_compose_refuses_to_start_without_each_secret(compose_text):
    """Each secret is `${NAME:?message}` everywhere it is used: no default, no empty fallback."""
    complete = {name: SENTINELS.get(name, "x") for name in SECRET_VARIABLES | required_variables(compose_text)}
    interpolate(compose_text, complete)  # a complete .env is enough
    for name in sorted(SECRET_VARIABLES):
        assert re.search(rf"\$\{{{name}\b", compose_text), f"{name} is not used by docker-compose.yaml"
        try:
            interpolate(compose_text, {k: v for k, v in complete.items() if k != name})
        except MissingVariable as missing:
            assert re.match(rf"{name}: \S", str(missing)), f"${{{name}:?...}} needs a message saying what to do"
        else:
            pytest.fail(f"docker-compose.yaml starts without {name}: require it as ${{{name}:?message}}")
        # `$$NAME` is the container's shell variable, not Compose's: not counted.
        bad = re.findall(rf"(?<!\$)\$\{{{name}(?!:\?\S)[^}}]*\}}|(?<!\$)\${name}\b", compose_text)
        assert not bad, f"{name} must be required as ${{{name}:?message}} everywhere, found {bad}"


def test_no_well_known_credentials(compose_text):
    found = [word for word in WELL_KNOWN_CREDENTIALS if word in compose_text]
    assert not found, f"docker-compose.yaml still carries well-known credentials: {found}"


def test_published_ports_bind_to_loopback_by_default(compose):
    published = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                host_ip = port.get("host_ip", "")
            else:
                parts = str(port).split(":")
                host_ip = parts[0] if len(parts) == 3 else ""
            published.append((name, host_ip))
            assert host_ip == LOOPBACK, f"{name} publishes {port} on every interface; bind it to {LOOPBACK}"
    assert {"airflow-webserver", "minio"} <= {name for name, _ in published}
    for name in ("postgres", "redis"):
        assert not compose["services"][name].get("ports"), f"{name} must not be published on the host"


def test_redis_requires_its_password_and_every_client_sends_it(compose):
    redis = compose["services"]["redis"]
    password = SENTINELS["REDIS_PASSWORD"]
    command = command_text(redis).replace('"', "")
    assert f"--requirepass {password}" in command or (
        "--requirepass $REDIS_PASSWORD" in command and environment(redis).get("REDIS_PASSWORD") == password
    ), f"redis must start with --requirepass: {command}"
    healthcheck = " ".join(redis["healthcheck"]["test"])
    assert "REDISCLI_AUTH" in healthcheck or " -a " in healthcheck, f"unauthenticated healthcheck: {healthcheck}"
    assert "PONG" in healthcheck, "a NOAUTH answer must fail the healthcheck"
    for name in AIRFLOW_SERVICES:
        broker = urlsplit(environment(compose["services"][name])["AIRFLOW__CELERY__BROKER_URL"])
        assert broker.password == password, f"{name}: the broker URL does not carry REDIS_PASSWORD"


def _registry_init_script(compose: dict) -> str:
    postgres = compose["services"]["postgres"]
    scripts = []
    for config in postgres.get("configs", []):
        definition = compose["configs"][config["source"]]
        assert "file" in definition, "the registry init script is a file under deploy/, not inline SQL"
        scripts.append((PROJECT_ROOT / definition["file"]).read_text())
    assert scripts, "postgres mounts no init script"
    return "\n".join(scripts)


def test_registry_uses_a_least_privilege_role(compose):
    postgres = compose["services"]["postgres"]
    superuser = environment(postgres)["POSTGRES_USER"]
    registry = urlsplit(environment(compose["services"]["airflow-worker"])["AIRFLOW_CONN_MRI_PG"])
    role, database = registry.username, registry.path.lstrip("/")
    assert role and role != superuser, f"AIRFLOW_CONN_MRI_PG logs in as the superuser {superuser}"
    assert registry.password == SENTINELS["MRI_DB_PASSWORD"], "AIRFLOW_CONN_MRI_PG must use MRI_DB_PASSWORD"
    assert environment(postgres).get("MRI_DB_PASSWORD") == SENTINELS["MRI_DB_PASSWORD"]
    script = _registry_init_script(compose)
    assert re.search(rf"CREATE ROLE {role}\b", script, re.I), f"the init script does not create the role {role}"
    options = " ".join(m[1] for m in re.finditer(rf"(?:CREATE|ALTER) ROLE {role}\b([^;]*);", script, re.I)).upper()
    options = options.split()
    for option in ("LOGIN", "NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE", "NOREPLICATION", "NOBYPASSRLS"):
        assert option in options, f"role {role} lacks {option}"
    assert "MRI_DB_PASSWORD" in script and "PASSWORD :'" in script.upper(), "the role's password comes from the env"
    assert re.search(rf"CREATE DATABASE {database} OWNER {role}\b", script, re.I), f"{role} must own {database}"
    assert re.search(r'REVOKE ALL ON DATABASE (?:airflow|:"metadata_db") FROM PUBLIC', script, re.I), (
        "any role may connect to Airflow's metadata database (REVOKE ALL ON DATABASE ... FROM PUBLIC)"
    )
    assert not re.search(rf"GRANT\b[^;]*\bTO {role}\b", script, re.I), f"{role} is granted more than its database"


def test_uploader_may_only_put_into_landing(compose):
    storage_root = urlsplit(environment(compose["services"]["airflow-worker"])["AIRFLOW_VAR_MRI_STORAGE_ROOT"])
    landing = f"arn:aws:s3:::{storage_root.netloc}{storage_root.path}/landing/*"
    assert "minio-init" in compose["services"], "no minio-init service creates the uploader user and its policy"
    init = compose["services"]["minio-init"]
    mounted = [PROJECT_ROOT / compose["configs"][c["source"]]["file"] for c in init.get("configs", [])]
    policies = [json.loads(path.read_text()) for path in mounted if path.suffix == ".json"]
    assert len(policies) == 1, f"minio-init mounts one policy file, found {mounted}"
    statements = policies[0]["Statement"]
    assert statements == [{"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [landing]}], statements
    script = command_text(init)
    bucket_step = f"mc mb --ignore-existing mri/{storage_root.netloc}"
    for step in (bucket_step, "mc admin policy create", "mc admin user add", "mc admin policy attach"):
        assert step in script, f"minio-init does not run `{step}`"
    env = environment(init)
    assert env.get("MINIO_UPLOADER_USER") == SENTINELS["MINIO_UPLOADER_USER"]
    assert env.get("MINIO_UPLOADER_PASSWORD") == SENTINELS["MINIO_UPLOADER_PASSWORD"]
    for name in AIRFLOW_SERVICES:
        assert compose["services"][name]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"


def test_minio_runs_a_release_with_the_auth_bypass_fixes(compose):
    minio = compose["services"]["minio"]
    image = minio["image"]
    match = re.fullmatch(r"(?P<repo>[^:@]+):RELEASE\.(?P<release>[0-9T-]+Z)(?:@sha256:[0-9a-f]{64})?", image)
    assert match, f"minio: {image} is not pinned to a MinIO release"
    assert match["repo"] == MINIO_FIXED_REPOSITORY, f"{image}: no community minio/minio release has the fixes"
    assert match["release"] >= MINIO_FIRST_FIXED_RELEASE, f"{image} predates the fix for CVE-2026-40344"
    # AIStor answers no S3 request without a license: the server is given the mounted one.
    license_path = re.search(r"--license (\S+)", command_text(minio))
    assert license_path, "AIStor needs --license <file>"
    assert license_path[1] in {f"/run/secrets/{s}" for s in minio.get("secrets", []) if isinstance(s, str)}
    mc = compose["services"]["minio-init"]["image"]
    assert re.fullmatch(r"[^:@]+:RELEASE\.[0-9T-]+Z(@sha256:[0-9a-f]{64})?", mc), f"minio-init: {mc} is not pinned"


def test_airflow_admin_password_comes_from_the_environment(compose):
    init = compose["services"]["airflow-init"]
    script = command_text(init)
    assert re.search(r'--password "\$\{?_AIRFLOW_WWW_USER_PASSWORD\}?"', script), (
        'airflow-init must create the admin with --password "$${_AIRFLOW_WWW_USER_PASSWORD}", not a fixed one'
    )
    assert environment(init).get("_AIRFLOW_WWW_USER_PASSWORD") == SENTINELS["_AIRFLOW_WWW_USER_PASSWORD"]
    assert "|| true" not in script, "airflow-init must not hide failures"


def test_env_example_lists_every_required_variable_without_a_value(compose_text):
    assert ENV_EXAMPLE.is_file(), "deploy/env.example is missing"
    entries = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    required = required_variables(compose_text)
    assert required >= SECRET_VARIABLES
    assert sorted(required - set(entries)) == [], "deploy/env.example lacks these variables"
    filled = {name: value for name, value in entries.items() if value.strip()}
    assert not filled, f"deploy/env.example must ship no values: {filled}"


def test_header_says_how_to_make_each_secret(compose_text):
    header = "\n".join(line for line in compose_text[: compose_text.index("\nx-")].splitlines() if line.startswith("#"))
    for name in sorted(required_variables(compose_text)):
        assert name in header, f"the header comment does not say how to set {name}"
    for how in ("Fernet.generate_key()", "openssl rand", "deploy/env.example"):
        assert how in header, f"the header comment does not mention {how}"
