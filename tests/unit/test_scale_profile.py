"""The scale profile's driver: what it sets, and what it says when a server it starts is missing."""

import logging
from pathlib import Path

from launcher import scale_profile


def test_scale_environment_is_celery_on_postgres_and_s3_with_the_one_variable():
    env = scale_profile.scale_environment(
        Path("/tmp/home"), "postgresql://u@h:1/meta", "postgresql://u@h:1/mri", "redis://h:2/0", "http://h:3", "b"
    )

    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://h:2/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql://u@h:1/meta"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://u@h:1/meta"
    assert env["AIRFLOW_CONN_MRI_PG"] == "postgres://u@h:1/mri" and env["AIRFLOW_VAR_MRI_DB_CONN_ID"] == "mri_pg"
    assert env["AIRFLOW_VAR_MRI_STORAGE_ROOT"] == "s3://b/mri" and env["AIRFLOW_VAR_MRI_STORAGE_CONN_ID"] == "mri_s3"


def test_the_scale_profile_never_writes_into_the_embedded_demo_s_folders():
    from include.config import load_settings, settings

    env = scale_profile.scale_environment(
        Path("/tmp/home"), "postgresql://m", "postgresql://r", "redis://", "http://s", "b"
    )
    scale, embedded = load_settings(env), settings()

    for folder in ("models_dir", "production_dir", "evaluations_dir", "quality_dir", "notifications_dir"):
        assert getattr(scale, folder).startswith("/tmp/home/"), folder
        assert getattr(scale, folder) != getattr(embedded, folder)


def test_missing_server_binaries_are_named_with_the_install_command(monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(scale_profile, "REDIS_SERVER", tmp_path / "no-redis-server")
    monkeypatch.setattr("sys.argv", ["scale_profile", "--home", str(tmp_path / "home")])

    with caplog.at_level(logging.ERROR):
        assert scale_profile.main() == 2

    assert "redis-server at " in caplog.text and "apt-get install postgresql-15 redis-server" in caplog.text
    assert not (tmp_path / "home").exists()  # nothing started, nothing made
