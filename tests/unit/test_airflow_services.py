"""The launcher: its Celery workers are told apart on one machine (node name, pid file, task
hostname), none binds the log server's port and all serve the training queue too; stopping a
component leaves none of its processes behind; a component that died is named with its log."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from include.config import settings
from launcher.services import (
    WORKER_NAME_VARIABLE,
    ComponentStopped,
    RunningServices,
    _stop,
    celery_worker_commands,
    worker_hostname,
)


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
        assert extra["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == "launcher.services.worker_hostname"
    assert len({extra[WORKER_NAME_VARIABLE] for _, _, extra in workers}) == 3


def test_worker_hostname_is_the_launched_workers_name_else_the_hosts(monkeypatch):
    from airflow.utils.net import getfqdn

    monkeypatch.setenv(WORKER_NAME_VARIABLE, "worker2-somehost")
    assert worker_hostname() == "worker2-somehost"
    monkeypatch.delenv(WORKER_NAME_VARIABLE)
    assert worker_hostname() == getfqdn()


# A parent that forks a child into a process group of its own, as Airflow's task runner does with
# each task, then both sleep; the child writes its pid to the file named by argv[1] once in its group.
TASK_RUNNER_LIKE = """
import os, sys, time
if os.fork() == 0:
    os.setpgid(0, 0)
    with open(sys.argv[1] + ".part", "w") as out:
        out.write(str(os.getpid()))
    os.rename(sys.argv[1] + ".part", sys.argv[1])
time.sleep(120)
"""


def sleeper(**popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], **popen)


def test_stopping_a_killed_component_also_kills_its_tasks_in_their_own_process_groups(tmp_path: Path):
    pid_file = tmp_path / "task.pid"
    component = subprocess.Popen([sys.executable, "-c", TASK_RUNNER_LIKE, str(pid_file)], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists():
            assert component.poll() is None and time.monotonic() < deadline, "the task was not started"
            time.sleep(0.05)
        task = psutil.Process(int(pid_file.read_text()))
        assert os.getpgid(task.pid) != component.pid  # out of the component's group, still in its session
        component.kill()  # as `kill -9` on the scheduler

        _stop([component])

        assert not task.is_running() or task.status() == psutil.STATUS_ZOMBIE  # left for its adopter to reap
        assert component.returncode == -9
    finally:
        if component.returncode is None:  # not stopped above: the test failed before
            _stop([component])


def test_running_services_name_the_component_that_died_and_its_log(tmp_path: Path):
    alive, dead = sleeper(start_new_session=True), sleeper(start_new_session=True)
    try:
        dead.kill()
        services = RunningServices({"triggerer": alive, "scheduler": dead}, tmp_path)
        log_file = re.escape(str(tmp_path / "scheduler.log"))

        with pytest.raises(
            ComponentStopped, match=rf"The scheduler stopped \(killed by signal 9\); its output: {log_file}"
        ):
            # Until the kill has landed; it is not reaped meanwhile, so its pid is not handed out again.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                services.raise_if_stopped()
                time.sleep(0.05)
        assert dead.returncode is None
    finally:
        _stop([alive, dead])
    assert (alive.returncode, dead.returncode) == (-15, -9)  # the live one got SIGTERM
