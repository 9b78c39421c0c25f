"""The launcher on Airflow 2.11: its components, its UI user, and progress read from the metadata DB.

Components: the scheduler (which also parses the DAG files) and the triggerer (the deferrable
sensors); with a UI, the webserver on 127.0.0.1:8080. None serves its logs over HTTP (Airflow
binds that server to every interface, and everything runs on this machine: the task logs are
local files the webserver reads).

Progress comes from the metadata DB through Airflow's ORM, in this process, not from the REST API:
on 2.x the API is served by the webserver (Flask under gunicorn, four workers by default), which
the demo would have to start on every run only to read what it can read directly. On this 2-CPU
machine it costs ~20 s of start-up and a few hundred MB, more than the whole registry stage of the
small demos, and buys nothing a local read lacks. Every ORM read of the launcher is in this module.
"""

from __future__ import annotations

import logging
import secrets
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime

from launcher.progress import ACTIVE_TASK_STATES, FAILED_TASK_STATES, LaunchPlan, Login, Run, reparse_interval

log = logging.getLogger(__name__)

UI_PORT = 8080
UI_USER = "admin"


def prepare(ui: bool) -> LaunchPlan:
    """The scheduler and the triggerer; with ``ui``, the webserver and a new random password for its admin."""
    plan = LaunchPlan(
        first=[],
        components=[
            ("scheduler", ["scheduler", "--skip-serve-logs"], {}),
            ("triggerer", ["triggerer", "--skip-serve-logs"], {}),
        ],
        env=reparse_interval("scheduler", ui),
    )
    if ui:
        plan.components.append(("webserver", ["webserver", "--port", str(UI_PORT), "--hostname", "127.0.0.1"], {}))
        plan.ui_url = f"http://127.0.0.1:{UI_PORT}"
        plan.login = ui_user()
    return plan


def connect(services, dag_ids: Sequence[str]) -> MetadataProgress:
    """Register and unpause ``dag_ids`` here, before the scheduler starts (nothing else writes the
    SQLite file meanwhile); the DB is then read directly."""
    if dag_ids:
        unpause(dag_ids)
    return MetadataProgress()


def unpause(dag_ids: Sequence[str]) -> None:
    """Register the DAGs in the metadata DB and unpause them, as a user would in the UI."""
    from airflow.models import DagBag, DagModel

    bag = DagBag(include_examples=False)
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    missing = sorted(set(dag_ids) - set(bag.dag_ids))
    if missing:
        raise RuntimeError(f"DAGs of the chain not found in {bag.dag_folder}: {missing}")
    bag.sync_to_db()
    for dag_id in dag_ids:
        DagModel.get_dagmodel(dag_id).set_is_paused(False)


def ui_user() -> Login:
    """The UI's admin with a new random password (127.0.0.1 only); an existing admin is made again
    with it (``airflow users reset-password`` fails on 2.11: "The sqlalchemy extension was not
    registered to the current application")."""
    password = secrets.token_urlsafe(12)
    users = [sys.executable, "-m", "airflow", "users"]
    create = users + ["create", "--username", UI_USER, "--password", password, "--role", "Admin"]
    create += ["--firstname", "Demo", "--lastname", "Admin", "--email", "admin@localhost"]
    done = subprocess.run(create, capture_output=True, text=True)
    # A second demo: "already exist", exit code 0, and the old password.
    if "already exist" in done.stdout + done.stderr:
        subprocess.run(users + ["delete", "--username", UI_USER], capture_output=True, check=True)
        done = subprocess.run(create, capture_output=True, text=True)
    if done.returncode or "already exist" in done.stdout + done.stderr:
        output = (done.stdout + done.stderr)[-2000:]
        raise RuntimeError(f"Could not make the UI user ({done.returncode}): {output}")
    return Login(UI_USER, password)


def log_message(line: str) -> str:
    """The message of a task log line: ``[time] {file.py:12} INFO - message``."""
    return line.split(" - ", 1)[-1].split("} ", 1)[-1].strip()


def _value(state) -> str | None:
    return getattr(state, "value", state)


class MetadataProgress:
    """:class:`launcher.progress.Progress` on the metadata DB, one session a call."""

    def runs(self, dag_ids: Sequence[str], since: datetime) -> list[Run]:
        from airflow.models import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.query(DagRun).filter(DagRun.dag_id.in_(dag_ids), DagRun.start_date >= since)
            return [
                Run(r.dag_id, r.run_id, _value(r.state), _value(r.run_type), r.start_date, r.end_date) for r in rows
            ]

    def failed_tasks(self, runs: Sequence[Run]) -> list[str]:
        from airflow.models import TaskInstance
        from airflow.utils.session import create_session

        lines = []
        with create_session() as session:
            for run in runs:
                for ti in session.query(TaskInstance).filter(
                    TaskInstance.dag_id == run.dag_id,
                    TaskInstance.run_id == run.run_id,
                    TaskInstance.state.in_(FAILED_TASK_STATES),
                ):
                    lines.append(f"{ti.dag_id}.{ti.task_id}[{ti.map_index}] {_value(ti.state)}")
        return lines

    def active_tasks(self, dag_ids: Sequence[str], ignore_task: str) -> int:
        from airflow.models import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            return (
                session.query(TaskInstance)
                .filter(
                    TaskInstance.dag_id.in_(dag_ids),
                    TaskInstance.task_id != ignore_task,
                    TaskInstance.state.in_(ACTIVE_TASK_STATES),
                )
                .count()
            )

    def queued_by_data(self, dag_ids: Sequence[str]) -> int:
        from airflow.models.dataset import DatasetDagRunQueue
        from airflow.utils.session import create_session

        with create_session() as session:
            return session.query(DatasetDagRunQueue).filter(DatasetDagRunQueue.target_dag_id.in_(dag_ids)).count()

    def active_runs(self, dag_ids: Sequence[str]) -> list[Run]:
        from airflow.models import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.query(DagRun).filter(DagRun.dag_id.in_(dag_ids), DagRun.state.in_(["queued", "running"]))
            return [
                Run(r.dag_id, r.run_id, _value(r.state), _value(r.run_type), r.start_date, r.end_date) for r in rows
            ]

    def start_delays(self, dag_ids: Sequence[str], since: datetime) -> list[float]:
        from airflow.models import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.query(TaskInstance.queued_dttm, TaskInstance.start_date).filter(
                TaskInstance.dag_id.in_(dag_ids), TaskInstance.start_date >= since, TaskInstance.queued_dttm.isnot(None)
            )
            return [(started - queued).total_seconds() for queued, started in rows]

    def return_values(self, dag_id: str, task_id: str, since: datetime) -> list:
        from airflow.models import XCom
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.query(XCom).filter(
                XCom.dag_id == dag_id, XCom.task_id == task_id, XCom.key == "return_value", XCom.timestamp >= since
            )
            return [row.value for row in rows]
