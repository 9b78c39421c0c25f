"""The Airflow components the demo and the end-to-end tests start as real processes, and stop.

What runs depends on the major (:mod:`launcher.airflow2`, :mod:`launcher.airflow3`, chosen here
and nowhere else): on 2.x a scheduler and a triggerer (for the deferrable sensors), the
webserver for a UI; on 3.x the api-server (always), the dag-processor, the scheduler and the
triggerer. Under the CeleryExecutor also ``MRI_CELERY_WORKERS`` Celery workers, each a separate
``airflow celery worker`` process with its own Celery node name and its own task hostname, as if
each ran on a machine of its own: the metadata DB then shows which worker ran which task
(``task_instance.hostname``).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from include.config import PROJECT_ROOT, settings
from include.db import get_database
from include.wiring.compat import AIRFLOW_V_3_0_PLUS
from include.wiring.setup import create_pools
from launcher.progress import Login, Progress

# What differs between the majors, in one module each behind the same functions (launcher.progress).
if AIRFLOW_V_3_0_PLUS:
    from launcher import airflow3 as this_airflow
else:
    from launcher import airflow2 as this_airflow

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


def start_component(command: list[str], log_file: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start one component in a session of its own (stopping it then reaches every process it
    started, see :func:`_kill_session`), told to exit (SIGTERM) when this launcher dies, even by
    SIGKILL: a killed ``make demo`` leaves no scheduler running on the metadata DB."""
    return subprocess.Popen(
        command,
        stdout=open(log_file, "ab"),  # noqa: SIM115 (the child owns it)
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        preexec_fn=_terminate_with_parent,  # noqa: PLW1509 (it calls prctl only, async-signal-safe)
    )


def _terminate_with_parent() -> None:
    """In the child before exec: SIGTERM when the thread that started it dies (PR_SET_PDEATHSIG)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class AnotherLauncher(RuntimeError):
    """Another launcher runs Airflow's components on the same Airflow home."""


class LauncherLock:
    """One launcher per Airflow home: an exclusive ``flock`` on ``<log_dir>/launcher.lock``.

    The kernel drops the lock when its holder dies, even by SIGKILL, so a live holder is the only
    one that refuses a second launcher (two schedulers on one SQLite file). The file lists the
    holder's components (pid and start time): a component that ignored or outlived the death
    signal, or a task its killed scheduler left running, is stopped by the next launcher before it
    starts its own.
    """

    def __init__(self, log_dir: Path):
        self.fd = os.open(log_dir / "launcher.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read().get("launcher", "unknown")
            os.close(self.fd)
            raise AnotherLauncher(
                f"Another launcher (pid {holder}) runs Airflow on {log_dir.parent}: stop it first "
                "(Ctrl-C where it runs), or wait for it to finish."
            ) from None
        self._stop_leftovers()

    def _read(self) -> dict:
        text = os.pread(self.fd, 1 << 16, 0).decode()
        return json.loads(text) if text.strip() else {}

    def _stop_leftovers(self) -> None:
        import psutil

        for name, (pid, started) in self._read().get("components", {}).items():
            with contextlib.suppress(psutil.NoSuchProcess):
                if psutil.Process(pid).create_time() != started:
                    continue  # the pid now names another process: not ours to stop
            # The leader may be gone while its session lives on (a killed scheduler's task).
            if session_members(pid):
                log.warning("Stopping what %s (pid %d) of a killed launcher left running", name, pid)
                _kill_session(pid)
        self.record({})

    def record(self, processes: dict[str, subprocess.Popen]) -> None:
        """Note the running ``processes`` (written in place: a new file would not carry the lock)."""
        import psutil

        components = {}
        for name, process in processes.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                components[name] = (process.pid, psutil.Process(process.pid).create_time())
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps({"launcher": os.getpid(), "components": components}).encode(), 0)

    def release(self) -> None:
        self.record({})
        os.close(self.fd)


class ComponentStopped(RuntimeError):
    """A component this launcher started exited while it was meant to be running.

    :param signal: the signal that killed it, None when it exited by itself.
    """

    def __init__(self, message: str, signal: int | None):
        super().__init__(message)
        self.signal = signal


@dataclass
class RunningServices:
    """The components :func:`airflow_services` started, by name, and how to reach them.

    :param api_url: the REST API the launcher reads (Airflow 3: the api-server), else None.
    :param ui_url: the UI, when one was asked for.
    :param login: the UI's and API's user, when there is one.
    :param progress: reads what the pipeline does (runs, task states, XComs), set once all started.
    """

    processes: dict[str, subprocess.Popen]
    log_dir: Path
    api_url: str | None = None
    ui_url: str | None = None
    login: Login | None = None
    progress: Progress | None = field(default=None, repr=False)

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
def airflow_services(log_dir: Path, ui: bool = False, dag_ids: Sequence[str] = ()) -> Iterator[RunningServices]:
    """This major's components and (CeleryExecutor) the Celery workers, stopped when the block ends.

    In two steps: what must be up before anything runs a task (3.x: the api-server, which tasks
    report to, and the dag-processor, which registers the DAGs), then, once ``dag_ids`` are
    registered and unpaused, the rest (the scheduler, the triggerer, the webserver, the workers).

    :param log_dir: where each component's output goes (``<name>.log``).
    :param ui: also the UI (2.x: the webserver on 127.0.0.1:8080; 3.x: the api-server, on
        ``[api] port``), with a new random password for user admin (``services.login``).
    :param dag_ids: DAGs to register and unpause before the scheduler starts.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    lock = LauncherLock(log_dir)  # before anything changes: a live launcher's password, pools, ...
    try:
        with _started(lock, log_dir, ui, dag_ids) as services:
            yield services
    finally:
        lock.release()


@contextmanager
def _started(lock: LauncherLock, log_dir: Path, ui: bool, dag_ids: Sequence[str]) -> Iterator[RunningServices]:
    plan = this_airflow.prepare(ui)
    # The executor starts every task as a new process: the venv's airflow, and the project
    # importable (`include`), as in an Astro image.
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
        **plan.env,
    }
    first, rest = (
        [(name, [sys.executable, "-m", "airflow", *args], extra) for name, args, extra in components]
        for components in (plan.first, plan.components)
    )
    if uses_celery():
        rest += celery_worker_commands(log_dir, settings().celery_workers)
    # Pools before the scheduler: a task in a missing pool would never be scheduled.
    create_pools(get_database())
    services = RunningServices({}, log_dir, plan.api_url, plan.ui_url, plan.login)
    try:
        for step in (first, rest):
            for name, command, extra in step:
                services.processes[name] = start_component(command, log_dir / f"{name}.log", {**env, **extra})
                lock.record(services.processes)
            if services.progress is None:
                services.progress = this_airflow.connect(services, dag_ids)
        log.info("Started %s; their output is in %s", ", ".join(services.processes), log_dir)
        yield services
    finally:
        _stop(list(services.processes.values()))
