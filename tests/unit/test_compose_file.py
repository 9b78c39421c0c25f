"""What can be checked of docker-compose.yaml without a Docker engine: its shape against the Compose
specification's rules we use, the files it references, and that its settings are the project's."""

import re

import pytest
import yaml

from include.config import PROJECT_ROOT, Settings, load_settings

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
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


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # resolves the `<<: *anchor` merges


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    return dict(item.split("=", 1) for item in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}


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
        assert environment(service)["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:"), name


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
            if not variable.startswith(("MRI_", "AIRFLOW_VAR_MRI_")):
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
