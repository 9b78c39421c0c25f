"""The launcher's Celery workers: one machine, yet each worker is told apart (node name, pid file,
task hostname) and none binds the log server's port; all serve the training queue too."""

from pathlib import Path

from include.airflow_services import WORKER_NAME_VARIABLE, celery_worker_commands, worker_hostname
from include.config import settings


def test_each_celery_worker_gets_its_own_name_pid_file_and_task_hostname(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MRI_TRAINING_QUEUE", "training")
    settings.cache_clear()

    workers = celery_worker_commands(tmp_path, 3)

    settings.cache_clear()
    assert [name for name, _, _ in workers] == ["worker1", "worker2", "worker3"]
    for name, command, extra in workers:
        assert command[command.index("--queues") + 1] == "default,training"
        assert command[command.index("--celery-hostname") + 1].startswith(f"{name}@")
        assert command[command.index("--pid") + 1] == str(tmp_path / f"{name}.pid")
        assert "--skip-serve-logs" in command  # two log servers would both bind port 8793
        assert extra["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == "include.airflow_services.worker_hostname"
    assert len({extra[WORKER_NAME_VARIABLE] for _, _, extra in workers}) == 3


def test_worker_hostname_is_the_launched_workers_name_else_the_hosts(monkeypatch):
    from airflow.utils.net import getfqdn

    monkeypatch.setenv(WORKER_NAME_VARIABLE, "worker2-somehost")
    assert worker_hostname() == "worker2-somehost"
    monkeypatch.delenv(WORKER_NAME_VARIABLE)
    assert worker_hostname() == getfqdn()
