"""The Airflow components the demo and the end-to-end tests start as real processes, and stop.

Always a scheduler and a triggerer (for the deferrable sensors). Under the CeleryExecutor also
``MRI_CELERY_WORKERS`` Celery workers, each a separate ``airflow celery worker`` process with its
own Celery node name and its own task hostname, as if each ran on a machine of its own: the
metadata DB then shows which worker ran which task (``task_instance.hostname``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from include.config import PROJECT_ROOT, settings
from include.db import get_database
from include.wiring.setup import create_pools

log = logging.getLogger(__name__)

# Set in each Celery worker's environment by this launcher only (not a user setting): the name the
# worker's tasks record as task_instance.hostname, through `[core] hostname_callable`.
WORKER_NAME_VARIABLE = "AIRFLOW_SERVICES_WORKER_NAME"
# Seconds a component gets to finish (a Celery worker: its running tasks) after SIGTERM.
STOP_TIMEOUT = 60


def worker_hostname() -> str:
    """The ``[core] hostname_callable`` of the launched workers: their own name, else the host's FQDN."""
    from airflow.utils.net import getfqdn

    return os.environ.get(WORKER_NAME_VARIABLE) or getfqdn()


def uses_celery() -> bool:
    """Whether the configured executor (or one of several) sends tasks to Celery workers."""
    from airflow.configuration import conf

    return any("Celery" in name for name in conf.get("core", "executor").split(","))


def celery_worker_commands(log_dir: Path, workers: int) -> list[tuple[str, list[str], dict[str, str]]]:
    """(name, command, extra environment) of each Celery worker to start.

    :param log_dir: where the pid files go.
    :param workers: how many workers.
    """
    from airflow.configuration import conf

    # Every worker serves the default queue and the training queue, so one machine runs everything;
    # beyond one machine, only the big workers serve `training` (README, "Beyond one machine").
    queues = ",".join(dict.fromkeys([conf.get("operators", "default_queue"), settings().training_queue]))
    host = socket.gethostname()
    commands = []
    for number in range(1, workers + 1):
        name = f"worker{number}"
        command = [sys.executable, "-m", "airflow", "celery", "worker", "--queues", queues]
        # Two workers on one machine: distinct Celery node names and pid files, and no log server
        # (both would bind its port 8793; the task logs are local files here anyway).
        command += ["--celery-hostname", f"{name}@{host}", "--pid", str(log_dir / f"{name}.pid"), "--skip-serve-logs"]
        extra = {
            WORKER_NAME_VARIABLE: f"{name}-{host}",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
        }
        commands.append((name, command, extra))
    return commands


def _exit_code(process: subprocess.Popen) -> int | None:
    """The component's exit code (negative: the signal that killed it), or None while it runs.

    Looked at without reaping it (WNOWAIT): until :func:`_stop` reaps it, its pid, and so the id of
    the session it leads, cannot be given to another process.
    """
    if process.returncode is not None:
        return process.returncode
    info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    if info is None:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each (a Celery worker finishes its tasks first); once each has exited, SIGKILL what is
    left of its session, then reap it. The ones already dead go first, so their orphans do not run
    on while the others get their grace period."""
    for process in processes:
        if _exit_code(process) is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
    for process in sorted(processes, key=lambda p: _exit_code(p) is None):
        deadline = time.monotonic() + STOP_TIMEOUT
        while _exit_code(process) is None:
            if time.monotonic() > deadline:
                process.kill()
            time.sleep(0.1)
        _kill_session(process.pid)
        process.wait()


def session_members(session_id: int) -> list:
    """The live (not zombie) processes of a session, as ``psutil.Process``."""
    import psutil

    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):  # a process that ended while we looked
            if os.getsid(process.pid) == session_id and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
    return members


def _kill_session(session_id: int, timeout: float = 10) -> None:
    """SIGKILL every live process of a session (its leader has exited) and wait until they are gone.

    The leader's process group is not enough: Airflow's task runner moves each task into a group of
    its own, so a killed scheduler's task would go on running (and writing) after the demo stopped.
    Members may fork while we look, so this repeats until a pass finds none.
    """
    import psutil

    deadline = time.monotonic() + timeout
    while members := session_members(session_id):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Processes of session {session_id} survived SIGKILL: {[p.pid for p in members]}")
        for process in members:
            with contextlib.suppress(psutil.Error):
                process.kill()
        time.sleep(0.05)


class ComponentStopped(RuntimeError):
    """A component this launcher started exited while it was meant to be running.

    :param signal: the signal that killed it, None when it exited by itself.
    """

    def __init__(self, message: str, signal: int | None):
        super().__init__(message)
        self.signal = signal


@dataclass
class RunningServices:
    """The components :func:`airflow_services` started, by name."""

    processes: dict[str, subprocess.Popen]
    log_dir: Path

    def raise_if_stopped(self) -> None:
        """Raise :class:`ComponentStopped` naming the first component that has exited, and its log."""
        for name, process in self.processes.items():
            if (code := _exit_code(process)) is not None:
                how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                raise ComponentStopped(
                    f"The {name} stopped ({how}); its output: {self.log_dir / f'{name}.log'}",
                    signal=-code if code < 0 else None,
                )


@contextmanager
def airflow_services(log_dir: Path, webserver: bool = False) -> Iterator[RunningServices]:
    """A scheduler, a triggerer and (CeleryExecutor) the Celery workers, stopped when the block ends.

    :param log_dir: where each component's output goes (``<name>.log``).
    :param webserver: also the webserver, on 127.0.0.1:8080.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    # The executor starts every task as an `airflow tasks run` process: the venv's airflow, and
    # the project importable (`include`), as in an Astro image.
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    components = [(service, [sys.executable, "-m", "airflow", service], {}) for service in ("scheduler", "triggerer")]
    if webserver:
        components.append(
            (
                "webserver",
                [sys.executable, "-m", "airflow", "webserver", "--port", "8080", "--hostname", "127.0.0.1"],
                {},
            )
        )
    if uses_celery():
        components += celery_worker_commands(log_dir, settings().celery_workers)
    # Pools before the scheduler: a task in a missing pool would never be scheduled.
    create_pools(get_database())
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name, command, extra in components:
            processes[name] = subprocess.Popen(
                command,
                stdout=open(log_dir / f"{name}.log", "ab"),  # noqa: SIM115 (the child owns it)
                stderr=subprocess.STDOUT,
                env={**env, **extra},
                # Its own session, so stopping it reaches every process it started (see _kill_session).
                start_new_session=True,
            )
        log.info("Started %s; their output is in %s", ", ".join(processes), log_dir)
        yield RunningServices(processes, log_dir)
    finally:
        _stop(list(processes.values()))
