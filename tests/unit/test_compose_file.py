"""What can be checked of the compose files without a Docker engine: their shape against the Compose
specification's rules we use, the files they reference, that their settings are the project's and
Airflow's, and that they ship no open doors (loopback ports, required secrets, least-privilege roles).

Two files, one deployment: docker-compose.yaml runs Airflow 2.11 (the default) and
docker-compose.airflow3.yaml Airflow 3.3; every guarantee below holds for both."""

import functools
import json
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import yaml

from include.config import PROJECT_ROOT, Settings, load_settings

ENV_EXAMPLE = PROJECT_ROOT / "deploy" / "env.example"
# Every secret both files need: each must come from the environment (`.env`), none has a default.
COMMON_SECRETS = frozenset(
    {
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
)


@dataclass(frozen=True)
class ComposeFile:
    """One compose file and what it must hold."""

    name: str
    image: str  # the tag its Airflow services run (and `build` makes)
    airflow_services: frozenset[str]
    ui_service: str  # the service that publishes Airflow's UI
    secrets: frozenset[str]
    # (Airflow setting, the .env variable it comes from): keys every component must share.
    shared_keys: tuple[tuple[str, str], ...]

    @property
    def path(self):
        return PROJECT_ROOT / self.name


AIRFLOW2 = ComposeFile(
    name="docker-compose.yaml",
    image="mri-pipeline:latest",
    airflow_services=frozenset(
        {
            "airflow-init",
            "airflow-webserver",
            "airflow-scheduler",
            "airflow-triggerer",
            "airflow-worker",
            "airflow-worker-training",
        }
    ),
    ui_service="airflow-webserver",
    secrets=COMMON_SECRETS,
    shared_keys=(
        ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW_FERNET_KEY"),
        ("AIRFLOW__WEBSERVER__SECRET_KEY", "AIRFLOW_SECRET_KEY"),
    ),
)
AIRFLOW3 = ComposeFile(
    name="docker-compose.airflow3.yaml",
    image="mri-pipeline:airflow3",
    airflow_services=frozenset(
        {
            "airflow-init",
            "airflow-apiserver",
            "airflow-dag-processor",
            "airflow-scheduler",
            "airflow-triggerer",
            "airflow-worker",
            "airflow-worker-training",
        }
    ),
    ui_service="airflow-apiserver",
    # The token the scheduler gives each task for the Task Execution API is signed with the JWT secret.
    secrets=COMMON_SECRETS | {"AIRFLOW_JWT_SECRET"},
    shared_keys=(
        ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW_FERNET_KEY"),
        ("AIRFLOW__API__SECRET_KEY", "AIRFLOW_SECRET_KEY"),
        ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW_JWT_SECRET"),
    ),
)
COMPOSE_FILES = [AIRFLOW2, AIRFLOW3]
# Top-level keys the Compose specification allows (plus `x-` extensions).
TOP_LEVEL_KEYS = {"version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models"}
DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
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
SECRET_VARIABLES = frozenset().union(*(f.secrets for f in COMPOSE_FILES))
SENTINELS = {name: f"sentinel-{name.strip('_').lower().replace('_', '-')}" for name in SECRET_VARIABLES}
SENTINELS["MINIO_LICENSE_FILE"] = "./minio.license"


@functools.cache
def parsed(compose_file: ComposeFile) -> dict:
    """The file as `docker compose` would see it with a complete `.env` (the `<<: *anchor` merges resolved)."""
    text = compose_file.path.read_text()
    env = {name: SENTINELS.get(name, f"sentinel-{name.lower()}") for name in required_variables(text)}
    return yaml.safe_load(interpolate(text, env))


@pytest.fixture(scope="module", params=COMPOSE_FILES, ids=["airflow2", "airflow3"])
def compose_file(request) -> ComposeFile:
    return request.param


@pytest.fixture(scope="module")
def compose_text(compose_file) -> str:
    return compose_file.path.read_text()


@pytest.fixture(scope="module")
def compose(compose_file) -> dict:
    return parsed(compose_file)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    return dict(item.split("=", 1) for item in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}


def command_text(service: dict) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def test_compose_file_has_the_scale_profile_services(compose_file, compose):
    assert {"postgres", "redis", "minio"} | compose_file.airflow_services <= set(compose["services"])
    extra = {key for key in compose if not key.startswith("x-")} - TOP_LEVEL_KEYS
    assert not extra, f"not Compose top-level keys: {extra}"
    for name, service in compose["services"].items():
        assert re.fullmatch(r"[a-zA-Z0-9._-]+", name)
        assert "image" in service or "build" in service, name
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in compose["services"], f"{name} depends on unknown {dependency}"
            assert rule["condition"] in DEPENDS_ON_CONDITIONS, (name, rule)
            if rule["condition"] == "service_healthy":  # `up` fails waiting on a service with no healthcheck
                assert "healthcheck" in compose["services"][dependency], f"{name} waits on {dependency}'s health"


def test_airflow_services_run_the_project_image_on_celery(compose_file, compose):
    for name in compose_file.airflow_services:
        service = compose["services"][name]
        assert service["image"] == compose_file.image, name
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


def test_compose_connections_and_queues_match_the_settings(compose_file, compose):
    for name in compose_file.airflow_services:
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


def test_compose_refuses_to_start_without_each_secret(compose_file, compose_text):
    """Each secret is `${NAME:?message}` everywhere it is used: no default, no empty fallback."""
    complete = {name: SENTINELS.get(name, "x") for name in compose_file.secrets | required_variables(compose_text)}
    interpolate(compose_text, complete)  # a complete .env is enough
    for name in sorted(compose_file.secrets):
        assert re.search(rf"\$\{{{name}\b", compose_text), f"{name} is not used by {compose_file.name}"
        try:
            interpolate(compose_text, {k: v for k, v in complete.items() if k != name})
        except MissingVariable as missing:
            assert re.match(rf"{name}: \S", str(missing)), f"${{{name}:?...}} needs a message saying what to do"
        else:
            pytest.fail(f"{compose_file.name} starts without {name}: require it as ${{{name}:?message}}")
        # `$$NAME` is the container's shell variable, not Compose's: not counted.
        bad = re.findall(rf"(?<!\$)\$\{{{name}(?!:\?\S)[^}}]*\}}|(?<!\$)\${name}\b", compose_text)
        assert not bad, f"{name} must be required as ${{{name}:?message}} everywhere, found {bad}"


def test_no_well_known_credentials(compose_file, compose_text):
    found = [word for word in WELL_KNOWN_CREDENTIALS if word in compose_text]
    assert not found, f"{compose_file.name} still carries well-known credentials: {found}"


def test_published_ports_bind_to_loopback_by_default(compose_file, compose):
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
    assert {compose_file.ui_service, "minio"} <= {name for name, _ in published}
    for name in ("postgres", "redis"):
        assert not compose["services"][name].get("ports"), f"{name} must not be published on the host"


def test_redis_requires_its_password_and_every_client_sends_it(compose_file, compose):
    redis = compose["services"]["redis"]
    password = SENTINELS["REDIS_PASSWORD"]
    command = command_text(redis).replace('"', "")
    assert f"--requirepass {password}" in command or (
        "--requirepass $REDIS_PASSWORD" in command and environment(redis).get("REDIS_PASSWORD") == password
    ), f"redis must start with --requirepass: {command}"
    healthcheck = " ".join(redis["healthcheck"]["test"])
    assert "REDISCLI_AUTH" in healthcheck or " -a " in healthcheck, f"unauthenticated healthcheck: {healthcheck}"
    assert "PONG" in healthcheck, "a NOAUTH answer must fail the healthcheck"
    for name in compose_file.airflow_services:
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


def test_uploader_may_only_put_into_landing(compose_file, compose):
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
    for name in compose_file.airflow_services:
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


def test_airflow2_admin_password_comes_from_the_environment():
    init = parsed(AIRFLOW2)["services"]["airflow-init"]
    script = command_text(init)
    assert re.search(r'--password "\$\{?_AIRFLOW_WWW_USER_PASSWORD\}?"', script), (
        'airflow-init must create the admin with --password "$${_AIRFLOW_WWW_USER_PASSWORD}", not a fixed one'
    )
    assert environment(init).get("_AIRFLOW_WWW_USER_PASSWORD") == SENTINELS["_AIRFLOW_WWW_USER_PASSWORD"]
    assert "|| true" not in script, "airflow-init must not hide failures"


def test_env_example_lists_every_required_variable_without_a_value(compose_file, compose_text):
    assert ENV_EXAMPLE.is_file(), "deploy/env.example is missing"
    entries = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    required = required_variables(compose_text)
    assert required >= compose_file.secrets
    assert sorted(required - set(entries)) == [], "deploy/env.example lacks these variables"
    filled = {name: value for name, value in entries.items() if value.strip()}
    assert not filled, f"deploy/env.example must ship no values: {filled}"


def test_header_says_how_to_make_each_secret(compose_text):
    header = "\n".join(line for line in compose_text[: compose_text.index("\nx-")].splitlines() if line.startswith("#"))
    for name in sorted(required_variables(compose_text)):
        assert name in header, f"the header comment does not say how to set {name}"
    for how in ("Fernet.generate_key()", "openssl rand", "deploy/env.example"):
        assert how in header, f"the header comment does not mention {how}"


def test_components_share_their_signing_keys_from_the_environment(compose_file, compose):
    """A key a component made up for itself would be refused by the others (tokens, log requests)."""
    for setting, variable in compose_file.shared_keys:
        values = {name: environment(compose["services"][name]).get(setting) for name in compose_file.airflow_services}
        assert set(values.values()) == {SENTINELS[variable]}, f"{setting} must be ${{{variable}}} everywhere: {values}"


def test_no_airflow_service_hides_a_failure(compose_file, compose):
    for name in compose_file.airflow_services:
        assert "|| true" not in command_text(compose["services"][name]), f"{name} must not hide failures"


# --- Airflow 3 ----------------------------------------------------------------------------------


def test_airflow3_image_is_built_from_the_airflow3_lock():
    """The build arguments the Dockerfile's header gives for Airflow 3, on the lock's Airflow version."""
    lock = (PROJECT_ROOT / "requirements-airflow3-lock.txt").read_text()
    version = re.search(r"^apache-airflow==(\S+)", lock, flags=re.M)[1]
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    wanted = {"AIRFLOW_IMAGE": f"apache/airflow:{version}-python3.11", "REQUIREMENTS": "requirements-airflow3-lock.txt"}
    for arg in wanted:
        assert re.search(rf"^ARG {arg}=", dockerfile, flags=re.M), f"the Dockerfile takes no build argument {arg}"
    services = parsed(AIRFLOW3)["services"]
    for name in AIRFLOW3.airflow_services:
        assert services[name]["build"]["args"] == wanted, name
    # Its own tag: building one major's image never replaces the other's.
    assert parsed(AIRFLOW2)["services"]["airflow-worker"]["image"] != services["airflow-worker"]["image"]


# Airflow 3's components: the command each service runs, and what its healthcheck must ask.
AIRFLOW3_COMPONENTS = {
    "airflow-apiserver": ("api-server", "http://localhost:8080/api/v2/version"),
    "airflow-dag-processor": ("dag-processor", "airflow jobs check --job-type DagProcessorJob"),
    "airflow-scheduler": ("scheduler", "http://localhost:8974/health"),
    "airflow-triggerer": ("triggerer", "airflow jobs check --job-type TriggererJob"),
    "airflow-worker": ("celery worker", "inspect ping"),
    "airflow-worker-training": ("celery worker", "inspect ping"),
}


@pytest.mark.parametrize("name", sorted(AIRFLOW3_COMPONENTS))
def test_airflow3_runs_each_component_with_a_healthcheck(name):
    service = parsed(AIRFLOW3)["services"][name]
    component, probe = AIRFLOW3_COMPONENTS[name]
    command = command_text(service)
    assert command.startswith(component) or f"exec airflow {component}" in command, f"{name} runs {command!r}"
    assert probe in " ".join(service["healthcheck"]["test"]), f"{name}'s healthcheck does not ask {probe}"
    if name == "airflow-scheduler":
        assert environment(service)["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true", "no /health to ask"


def test_airflow3_has_no_webserver():
    """`airflow webserver` is gone in 3.x: the api-server serves the UI."""
    services = parsed(AIRFLOW3)["services"]
    assert not [name for name, s in services.items() if "webserver" in name or "webserver" in command_text(s)]


def test_airflow3_workers_reach_the_task_execution_api():
    services = parsed(AIRFLOW3)["services"]
    api_server_ports = {str(port).rsplit(":", 1)[-1] for port in services["airflow-apiserver"]["ports"]}
    for name in AIRFLOW3.airflow_services:
        url = urlsplit(environment(services[name])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert (url.scheme, url.hostname, url.path) == ("http", "airflow-apiserver", "/execution/"), name
        assert str(url.port) in api_server_ports, (
            f"{name}: the api-server listens on {api_server_ports}, not {url.port}"
        )
    for name in ("airflow-worker", "airflow-worker-training"):
        rule = services[name]["depends_on"].get("airflow-apiserver")
        assert rule == {"condition": "service_healthy"}, f"{name} may start before the api-server answers"


def test_airflow3_ui_login_is_the_admin_with_the_password_from_the_environment(tmp_path):
    """The simple auth manager (the 3.x lock has no FAB provider): `admin` only, everyone-is-admin off,
    the password from .env written as JSON, readable by its owner only, by the api-server alone."""
    services = parsed(AIRFLOW3)["services"]
    for name in AIRFLOW3.airflow_services:
        env = environment(services[name])
        assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith(".simple_auth_manager.SimpleAuthManager"), name
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"].lower() == "false", f"{name}: no login at all"
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:ADMIN", name
        if name != "airflow-apiserver":
            assert "_AIRFLOW_WWW_USER_PASSWORD" not in env, f"{name} holds the UI's password"
    api_server = services["airflow-apiserver"]
    env = environment(api_server)
    assert env["_AIRFLOW_WWW_USER_PASSWORD"] == SENTINELS["_AIRFLOW_WWW_USER_PASSWORD"]
    # The file lives in the api-server's own container, not on a volume the workers (and tasks) share.
    passwords_file = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    for volume in api_server.get("volumes", []):
        target = volume.split(":")[1] if isinstance(volume, str) else volume["target"]
        assert not passwords_file.startswith(target.rstrip("/") + "/"), f"{passwords_file} is on the volume {volume}"
    bash, flag, script = api_server["command"]
    assert (bash, flag) == ("bash", "-c"), "the api-server runs through the image's entrypoint, which waits for the DB"

    # Run the script as the container would, with a stand-in `airflow` that records how it was called.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    (bin_dir / "airflow").write_text('#!/bin/sh\necho "$*" > "$CALLED_WITH"\nenv > "$CALLED_WITH.env"\n')
    (bin_dir / "airflow").chmod(0o755)
    password = 'p"a\\ss $(word) `x` ü'
    target = tmp_path / "passwords.json"
    done = subprocess.run(
        ["bash", "-c", script],
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "_AIRFLOW_WWW_USER_PASSWORD": password,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(target),
            "CALLED_WITH": str(tmp_path / "called"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(target.read_text()) == {"admin": password}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600, oct(target.stat().st_mode)
    assert (tmp_path / "called").read_text().split() == ["api-server"]
    assert "_AIRFLOW_WWW_USER_PASSWORD" not in (tmp_path / "called.env").read_text()
    assert password not in done.stdout + done.stderr, "the password must not reach the log"


# --- Both files, one deployment -----------------------------------------------------------------

STORAGE_SERVICES = ("postgres", "redis", "minio", "minio-init")
# Airflow settings 3.x renamed: (2.x name, 3.x name).
RENAMED_SETTINGS = {"AIRFLOW__WEBSERVER__SECRET_KEY": "AIRFLOW__API__SECRET_KEY"}


def test_both_files_run_the_same_storage_services():
    """Word for word, so a pin or a fix (the MinIO release, Redis's password) lands in both."""
    airflow2, airflow3 = parsed(AIRFLOW2), parsed(AIRFLOW3)
    for name in STORAGE_SERVICES:
        assert airflow2["services"][name] == airflow3["services"][name], f"{name} differs between the compose files"
    for key in ("configs", "secrets", "volumes"):
        assert airflow2[key] == airflow3[key], f"top-level {key} differ between the compose files"


@pytest.mark.parametrize("name", ["airflow-scheduler", "airflow-worker", "airflow-worker-training"])
def test_both_files_give_airflow_and_the_pipeline_the_same_settings(name):
    """Airflow 3 adds settings of its own; each of Airflow 2's is there too, with the same value."""
    airflow2 = environment(parsed(AIRFLOW2)["services"][name])
    airflow3 = environment(parsed(AIRFLOW3)["services"][name])
    for variable, value in airflow2.items():
        assert airflow3.get(RENAMED_SETTINGS.get(variable, variable)) == value, f"{name}: {variable}"
    commands = [command_text(parsed(f)["services"][name]) for f in COMPOSE_FILES]
    assert commands[0] == commands[1], f"{name} runs {commands}"


@functools.cache
def airflow_options() -> tuple[str, dict[str, set[str]], dict]:
    """The running Airflow's version, its options by section (its providers' included), and its
    renamed options as {(new section, new key): (old section, old key, since)}."""
    import airflow
    from airflow.configuration import conf
    from airflow.providers_manager import ProvidersManager

    ProvidersManager().initialize_providers_configuration()
    options = {section: set(about.get("options", {})) for section, about in conf.configuration_description.items()}
    return airflow.__version__, options, dict(conf.deprecated_options)


def test_airflow_settings_are_options_of_the_running_airflow():
    """Each `AIRFLOW__SECTION__KEY` of the file for the Airflow that runs the tests (both run the suite)
    is an option that Airflow has, under its current name: a misspelt or renamed one is ignored silently."""
    from include.wiring.compat import AIRFLOW_V_3_0_PLUS

    compose_file = AIRFLOW3 if AIRFLOW_V_3_0_PLUS else AIRFLOW2
    version, options, renamed = airflow_options()
    old_names = {(old[0], old[1]): new for new, old in renamed.items()}
    services = parsed(compose_file)["services"]
    checked = set()
    for name in compose_file.airflow_services:
        for variable in environment(services[name]):
            if not variable.startswith("AIRFLOW__"):
                continue
            section, key = (part.lower() for part in variable.removeprefix("AIRFLOW__").split("__", 1))
            new = old_names.get((section, key))
            assert new is None, f"{compose_file.name}: {variable} is renamed in Airflow {version}: [{new[0]}] {new[1]}"
            assert key in options.get(section, ()), f"{compose_file.name}: {variable} is no option of Airflow {version}"
            checked.add(variable)
    assert "AIRFLOW__CORE__EXECUTOR" in checked
