"""What the launcher needs from the running Airflow, the same on both majors.

Each major implements it in one module: :mod:`launcher.airflow2` (the metadata DB through
Airflow's ORM) and :mod:`launcher.airflow3` (the api-server's public REST API v2);
:mod:`launcher.services` picks the one of the installed Airflow, through
``include.wiring.compat.AIRFLOW_V_3_0_PLUS``, and nothing else looks at the version.

A major's module offers:

- ``prepare(ui) -> LaunchPlan``: before any component starts (the components, their environment,
  where the API and the UI will be, the UI's login).
- ``connect(services, dag_ids) -> Progress``: once the plan's ``first`` components started and
  before the others do; the DAGs ``dag_ids`` are registered and unpaused when it returns.
- ``log_message(line) -> str``: the message of one line of a task's log file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

# Task states in which a task still has work to do (or waits for its turn).
ACTIVE_TASK_STATES = ("scheduled", "queued", "running", "up_for_retry", "restarting", "deferred")
FAILED_TASK_STATES = ("failed", "upstream_failed")


@dataclass(frozen=True)
class Run:
    """One DAG run, as the demo prints it."""

    dag_id: str
    run_id: str
    state: str
    run_type: str
    start_date: datetime | None
    end_date: datetime | None


@dataclass(frozen=True)
class Login:
    """A UI/API user; the password is made for one launch and never logged by ``repr``."""

    username: str
    password: str = field(repr=False)


@dataclass
class LaunchPlan:
    """What :func:`launcher.services.airflow_services` starts.

    :param first: (name, arguments after ``airflow``, extra environment) of each component to
        start before :func:`connect` (3.x: the api-server, which every task reports to, and the
        dag-processor, which registers the DAGs).
    :param components: the same, of the components started after it (the scheduler, ...).
    :param env: environment every component gets (and the Celery workers).
    :param api_url: base URL of the REST API the launcher reads, if it reads one.
    :param ui_url: where the UI is, when one was asked for.
    :param login: the UI's (and API's) user, when there is one.
    """

    first: list[tuple[str, list[str], dict[str, str]]]
    components: list[tuple[str, list[str], dict[str, str]]]
    env: dict[str, str] = field(default_factory=dict)
    api_url: str | None = None
    ui_url: str | None = None
    login: Login | None = None


# The demo's DAG files do not change while it runs, yet Airflow parses every file again every 30 s
# by default (``min_file_process_interval``). Without a UI, each file is parsed when its component
# starts and then at most this often (a changed file sooner), unless the environment sets the option.
REPARSE_SECONDS = 600


def reparse_interval(section: str, ui: bool) -> dict[str, str]:
    """The environment that sets ``[<section>] min_file_process_interval`` to REPARSE_SECONDS (the
    option's section: ``scheduler`` on 2.x, ``dag_processor`` on 3.x); nothing with a UI, where a
    user may edit the code the DAG files import, or where the environment sets the option under
    either section (3.x still reads the 2.x name)."""
    if ui or any(name.endswith("__MIN_FILE_PROCESS_INTERVAL") for name in os.environ):
        return {}
    return {f"AIRFLOW__{section.upper()}__MIN_FILE_PROCESS_INTERVAL": str(REPARSE_SECONDS)}


class Progress(Protocol):
    """Reads what the pipeline is doing; every method is one look, nothing is cached but XCom values."""

    def runs(self, dag_ids: Sequence[str], since: datetime) -> list[Run]:
        """The runs of ``dag_ids`` started at or after ``since``."""

    def failed_tasks(self, runs: Sequence[Run]) -> list[str]:
        """``dag.task[map_index] state`` of each failed or upstream-failed task of ``runs``."""

    def active_tasks(self, dag_ids: Sequence[str], ignore_task: str) -> int:
        """How many tasks of ``dag_ids`` (other than ``ignore_task``) are in :data:`ACTIVE_TASK_STATES`."""

    def queued_by_data(self, dag_ids: Sequence[str]) -> int:
        """How many Dataset (Asset) events wait to start a run of one of ``dag_ids``."""

    def active_runs(self, dag_ids: Sequence[str]) -> list[Run]:
        """The runs of ``dag_ids`` that are queued or running, whenever they started."""

    def start_delays(self, dag_ids: Sequence[str], since: datetime) -> list[float]:
        """Seconds from queued to running of each task of ``dag_ids`` that started at or after
        ``since``: what the executor and the task runner cost a task before its code runs."""

    def return_values(self, dag_id: str, task_id: str, since: datetime) -> list:
        """The return values (XCom ``return_value``) of ``dag_id.task_id`` written at or after ``since``."""
