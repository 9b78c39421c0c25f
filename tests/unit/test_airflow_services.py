"""The launcher: its Celery workers are told apart on one machine (node name, pid file, task
hostname), none binds the log server's port and all serve the training queue too; stopping a
component leaves none of its processes behind; a component that died is named with its log. Each
major's half (launcher.airflow2, launcher.airflow3): nothing listens beyond 127.0.0.1, 3.x's
components reach the api-server the launcher starts, its API user gets a new private password per
launch, task log lines of both formats, and the REST progress reader (GETs only, pages, retries)."""

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
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


# A launcher as `make demo` is one: it holds the lock and starts two components, a plain one and
# one that ignores SIGTERM and has a task in a process group of its own (a scheduler that does not
# go, and what it ran); it writes their pids, then waits to be killed.
KILLED_LAUNCHER = """
import json, subprocess, sys, time
from pathlib import Path
from launcher.services import LauncherLock, start_component
home = Path(sys.argv[1])
lock = LauncherLock(home)
plain = start_component([sys.executable, "-c", "import time; time.sleep(120)"], home / "plain.log", {})
stubborn = start_component(
    [sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
     "code = sys.argv.pop(1); exec(code)", sys.argv[2], str(home / "task.pid")],
    home / "stubborn.log", {},
)
lock.record({"plain": plain, "stubborn": stubborn})
while not (home / "task.pid").exists():
    time.sleep(0.05)
(home / "pids.part").write_text(json.dumps([plain.pid, stubborn.pid, int((home / "task.pid").read_text())]))
(home / "pids.part").rename(home / "pids")
time.sleep(120)
"""


def test_a_killed_launchers_components_go_with_it_or_with_the_next_launcher(tmp_path: Path):
    from launcher.services import AnotherLauncher, LauncherLock

    launcher = subprocess.Popen([sys.executable, "-c", KILLED_LAUNCHER, str(tmp_path), TASK_RUNNER_LIKE])
    try:
        deadline = time.monotonic() + 180  # it imports Airflow
        while not (tmp_path / "pids").exists():
            assert launcher.poll() is None and time.monotonic() < deadline, "the launcher did not start"
            time.sleep(0.05)
        plain, stubborn, task = (psutil.Process(pid) for pid in json.loads((tmp_path / "pids").read_text()))
        # While it lives, a second launcher on the same home is refused, naming it.
        with pytest.raises(AnotherLauncher, match=rf"Another launcher \(pid {launcher.pid}\)"):
            LauncherLock(tmp_path)

        launcher.kill()  # as `kill -9` on `make demo`
        launcher.wait()

        plain.wait(timeout=30)  # told to go by the death signal (SIGTERM)
        assert stubborn.is_running() and task.is_running()  # it ignored it; its task runs on
        lock = LauncherLock(tmp_path)  # the next launcher
        lock.release()
        for process in (stubborn, task):
            assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    finally:
        if launcher.poll() is None:
            launcher.kill()
        for pid in json.loads((tmp_path / "pids").read_text()) if (tmp_path / "pids").exists() else []:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


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


def test_no_component_listens_beyond_this_machine_and_scheduler_and_triggerer_serve_no_logs():
    from launcher import airflow2, airflow3

    for plan in (airflow2.prepare(ui=False), airflow3.prepare(ui=False)):
        components = plan.first + plan.components
        assert {"scheduler", "triggerer"} <= {name for name, _, _ in components}
        for name, args, _ in components:
            for flag in ("--host", "--hostname"):
                if flag in args:
                    assert args[args.index(flag) + 1] == "127.0.0.1", name
            if name in ("scheduler", "triggerer"):
                assert "--skip-serve-logs" in args  # Airflow binds the log server to every interface


def test_on_airflow_3_the_api_server_is_up_before_anything_runs_a_task_and_every_component_reaches_it():
    from launcher import airflow3

    plan = airflow3.prepare(ui=False)

    assert [name for name, _, _ in plan.first] == ["api-server", "dag-processor"]
    assert [name for name, _, _ in plan.components] == ["scheduler", "triggerer"]
    api = dict(zip(plan.first[0][1][1::2], plan.first[0][1][2::2], strict=False))
    assert plan.api_url == f"http://127.0.0.1:{api['--port']}" and api["--host"] == "127.0.0.1"
    assert plan.env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{plan.api_url}/execution/"
    assert plan.ui_url is None and plan.login.username == "admin"


def test_each_launch_on_airflow_3_gets_a_new_private_password_and_keeps_other_users(tmp_path: Path, monkeypatch):
    from launcher import airflow3

    passwords = tmp_path / "passwords.json"
    passwords.write_text('{"viewer1": "kept"}')
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))

    first, second = airflow3.new_password("admin"), airflow3.new_password("admin")

    assert first.password != second.password and len(second.password) >= 16
    assert json.loads(passwords.read_text()) == {"viewer1": "kept", "admin": second.password}
    assert passwords.stat().st_mode & 0o077 == 0
    assert second.password not in repr(second)


def test_task_log_lines_of_both_majors_give_their_message():
    from launcher import airflow2, airflow3

    message = "epoch 2/2 loss 0.7939 accuracy 0.500"
    assert airflow2.log_message(f"[2026-12-01T16:34:29.120+0000] {{train.py:135}} INFO - {message}\n") == message
    assert airflow3.log_message(json.dumps({"timestamp": "2026-12-01T16:29:47Z", "event": message})) == message


def test_progress_on_airflow_3_reads_pages_filters_by_dag_and_reads_each_xcom_once(monkeypatch):
    """Only GETs (the POST list endpoints write an audit row each); a 500 (SQLite busy) is tried again."""
    import httpx

    from launcher import airflow3
    from launcher.progress import Login

    monkeypatch.setattr(airflow3, "PAGE", 2)
    calls = []
    failures = iter([500])
    xcoms = [
        {"run_id": "r2", "map_index": 0, "timestamp": "2026-12-01T10:00:05+00:00"},
        {"run_id": "r1", "map_index": 1, "timestamp": "2026-12-01T10:00:01+00:00"},
        {"run_id": "r0", "map_index": 0, "timestamp": "2026-12-01T09:00:00+00:00"},  # before the demo
    ]
    tis = [
        {"dag_id": "a", "task_id": "work"},
        {"dag_id": "a", "task_id": "wait_for_landing_files"},
        {"dag_id": "other", "task_id": "work"},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path))
        assert request.method in ("GET", "POST") and (request.method == "GET" or request.url.path == "/auth/token")
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        assert request.headers["Authorization"] == "Bearer t"
        offset, limit = int(request.url.params.get("offset", 0)), int(request.url.params.get("limit", 100))
        if request.url.path.endswith("/taskInstances"):
            if next(failures, None):
                return httpx.Response(500, json={"detail": "database is locked"})
            return httpx.Response(200, json={"task_instances": tis[offset : offset + limit], "total_entries": 3})
        if request.url.path.endswith("/xcomEntries"):
            return httpx.Response(200, json={"xcom_entries": xcoms[offset : offset + limit], "total_entries": 3})
        run_id = request.url.path.split("/dagRuns/")[1].split("/")[0]
        return httpx.Response(200, json={"value": {"counts": {"moved": int(run_id[1])}}})

    monkeypatch.setattr(airflow3.time, "sleep", lambda seconds: None)
    client = airflow3.ApiClient("http://api", Login("admin", "pw"), transport=httpx.MockTransport(handler))
    client.login()
    progress = airflow3.RestProgress(client)
    since = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

    assert progress.active_tasks(["a"], ignore_task="wait_for_landing_files") == 1
    assert progress.return_values("a", "move_batch", since) == [{"counts": {"moved": 2}}, {"counts": {"moved": 1}}]
    assert progress.return_values("a", "move_batch", since) == [{"counts": {"moved": 2}}, {"counts": {"moved": 1}}]
    value_reads = [path for _, path in calls if path.endswith("/return_value")]
    assert len(value_reads) == 2  # each value once, though listed twice


class FakeProgress:
    """The Progress interface (launcher.progress) over fixed runs."""

    def __init__(self, runs):
        self.all = runs

    def runs(self, dag_ids, since):
        return [run for run in self.all if run.dag_id in dag_ids and run.start_date >= since]

    def active_runs(self, dag_ids):
        return [run for run in self.all if run.dag_id in dag_ids and run.state in ("queued", "running")]

    def failed_tasks(self, runs):
        return [f"{run.dag_id}.fine_tune[0] failed" for run in runs]

    def active_tasks(self, dag_ids, ignore_task):
        return 0

    def queued_by_data(self, dag_ids):
        return 0

    def return_values(self, dag_id, task_id, since):
        return []


def test_a_run_an_earlier_demo_left_running_is_watched_to_its_end_and_its_failure_stops_the_demo(
    tmp_path: Path, monkeypatch
):
    from dataclasses import replace

    from launcher.demo import PipelineFailed, Watcher
    from launcher.progress import Run

    monkeypatch.setenv("MRI_STORAGE_ROOT", str(tmp_path / "storage"))
    monkeypatch.setenv("MRI_NOTIFICATIONS_DIR", str(tmp_path / "notifications"))
    settings.cache_clear()
    since = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    before = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    resumed = Run("train_model", "r1", "running", "asset_triggered", before, None)
    old = Run("train_model", "r0", "failed", "asset_triggered", before, before)  # an old failure: not news
    progress = FakeProgress([resumed, old])
    try:
        watcher = Watcher(progress, ["quality_gate_train", "train_model"], since)
        assert watcher.poll() is False  # the resumed run is still running: not quiet

        progress.all = [replace(resumed, state="failed", end_date=since), old]
        with pytest.raises(PipelineFailed, match=r"train_model\.fine_tune\[0\] failed"):
            watcher.poll()
    finally:
        settings.cache_clear()


def test_on_airflow_3_the_embedded_profile_runs_one_task_at_a_time_unless_told_otherwise(monkeypatch):
    """The LocalExecutor on SQLite replaces 2.x's SequentialExecutor: DuckDB allows one process on its file."""
    from launcher import airflow3

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    monkeypatch.delenv("AIRFLOW__CORE__PARALLELISM", raising=False)
    assert airflow3.one_task_at_a_time_on_sqlite() == {"AIRFLOW__CORE__PARALLELISM": "1"}
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "4")
    assert airflow3.one_task_at_a_time_on_sqlite() == {}
    monkeypatch.delenv("AIRFLOW__CORE__PARALLELISM")
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2://airflow@127.0.0.1/airflow")
    assert airflow3.one_task_at_a_time_on_sqlite() == {}


def test_the_demo_parses_each_dag_file_at_start_and_not_every_30_s_unless_the_environment_says(monkeypatch):
    from airflow.configuration import conf

    from launcher.progress import REPARSE_SECONDS, reparse_interval
    from launcher.services import this_airflow

    [(name, value)] = [(k, v) for k, v in this_airflow.prepare(ui=False).env.items() if "MIN_FILE_PROCESS" in k]
    section = name.split("__")[1].lower()
    assert conf.has_option(section, "min_file_process_interval"), name  # this major's option, not the other's
    assert value == str(REPARSE_SECONDS)
    assert reparse_interval(section, ui=True) == {}  # a UI user may be editing include/
    monkeypatch.setenv("AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL", "30")  # the 2.x name, which 3.x reads too
    assert name not in this_airflow.prepare(ui=False).env
