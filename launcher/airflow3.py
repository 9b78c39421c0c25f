"""The launcher on Airflow 3: its components, the api-server's login, and progress from REST API v2.

Components: the api-server, always (task processes report their state, XComs and heartbeats
through its Task Execution API at ``[core] execution_api_server_url``, so no task runs without
it), on 127.0.0.1 at a free port (with a UI: ``[api] port``, 8080 by default); the dag-processor
(a component of its own on 3.x: the scheduler parses no DAG file); the scheduler; the triggerer
(the deferrable sensors). The api-server and the dag-processor start first; the scheduler and the
triggerer once the api-server answers and the DAGs are unpaused. Every component is told the
api-server's address. None serves its logs over HTTP (Airflow binds that server to every
interface; the task logs are local files here). On SQLite the LocalExecutor runs one task at a
time, as Airflow 2's SequentialExecutor did (:func:`one_task_at_a_time_on_sqlite`).

The api-server authenticates with the simple auth manager (the default): each launch writes a new
random password for user ``admin`` into its passwords file (``[core]
simple_auth_manager_passwords_file``, mode 0600) before the api-server starts; the demo prints it
once when it keeps the UI up. The launcher logs in with it (``POST /auth/token``) and reads and
unpauses through the public REST API v2 only: no ORM, no metadata DB access from this process.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import httpx

from launcher.progress import ACTIVE_TASK_STATES, FAILED_TASK_STATES, LaunchPlan, Login, Run, reparse_interval

log = logging.getLogger(__name__)

API_USER = "admin"
# The api-server's own start-up and the dag-processor's first parse of every DAG file, on a busy
# 2-CPU machine with four Airflow components starting at once.
READY_TIMEOUT = 300
PAGE = 100  # [api] maximum_page_limit's default


def prepare(ui: bool) -> LaunchPlan:
    """The four components, the api-server's address for all, and a new password for the API's user.

    The api-server and the dag-processor start first: a task the scheduler starts before the
    api-server answers cannot report that it runs (a resumed demo's scheduler queues the reset tasks
    within seconds), and the DAGs must be registered before they can be unpaused.
    """
    from airflow.configuration import conf

    from launcher.servers import free_port

    port = conf.getint("api", "port") if ui else free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        **one_task_at_a_time_on_sqlite(),
        **reparse_interval("dag_processor", ui),
    }
    return LaunchPlan(
        first=[
            ("api-server", ["api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], {}),
            ("dag-processor", ["dag-processor"], {}),
        ],
        components=[
            ("scheduler", ["scheduler", "--skip-serve-logs"], {}),
            ("triggerer", ["triggerer", "--skip-serve-logs"], {}),
        ],
        env=env,
        api_url=base,
        ui_url=base if ui else None,
        login=new_password(API_USER),
    )


def one_task_at_a_time_on_sqlite() -> dict[str, str]:
    """``[core] parallelism`` 1 for the embedded profile (LocalExecutor on SQLite), unless set in the
    environment: what Airflow 2's SequentialExecutor gave it, which 3.x maps to the LocalExecutor.

    Measured on the demo (20 images a class) with the default parallelism (32): up to 3 tasks ran
    at once and pool ``mri_db`` kept its 1 slot, but ``fine_tune`` (pool ``mri_training``) opens the
    DuckDB registry too and overlapped registry tasks (DuckDB lets one process hold the file), and
    the api-server's SQLite writes met "database is locked" (500s, a task that could not start). One
    task at a time: 196 s and 239 s against 203 s and 306 s in parallel, on a shared 2-CPU machine.
    """
    from airflow.configuration import conf

    local = conf.get("core", "executor").split(",")[0].strip().rsplit(".", 1)[-1] == "LocalExecutor"
    sqlite = conf.get("database", "sql_alchemy_conn").startswith("sqlite")
    if local and sqlite and "AIRFLOW__CORE__PARALLELISM" not in os.environ:
        return {"AIRFLOW__CORE__PARALLELISM": "1"}
    return {}


def passwords_file() -> Path:
    """Where the simple auth manager keeps its users' passwords (plain JSON)."""
    from airflow.configuration import AIRFLOW_HOME, conf

    configured = conf.get("core", "simple_auth_manager_passwords_file", fallback=None)
    return Path(configured or Path(AIRFLOW_HOME, "simple_auth_manager_passwords.json.generated"))


def new_password(username: str) -> Login:
    """A new random password for ``username`` in the passwords file (other users' are kept)."""
    from include.files import atomic_write

    path = passwords_file()
    try:
        passwords = json.loads(path.read_text() or "{}")
    except (FileNotFoundError, json.JSONDecodeError):
        passwords = {}
    login = Login(username, secrets.token_urlsafe(12))
    passwords[username] = login.password
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(passwords) + "\n")  # a private temp file: mode 0600
    return login


def connect(services, dag_ids: Sequence[str]) -> RestProgress:
    """Wait for the api-server, log in, wait until the dag-processor registered ``dag_ids``, unpause them."""
    client = ApiClient(services.api_url, services.login)
    deadline = time.monotonic() + READY_TIMEOUT
    while not client.healthy():
        services.raise_if_stopped()
        if time.monotonic() > deadline:
            raise TimeoutError(f"The api-server did not answer within {READY_TIMEOUT} s; see {services.log_dir}")
        time.sleep(1)
    client.login()
    if dag_ids:
        wait_for_dags(client, services, dag_ids, deadline)
        for dag_id in dag_ids:
            client.request("PATCH", f"/api/v2/dags/{_segment(dag_id)}", json={"is_paused": False})
    return RestProgress(client)


def wait_for_dags(client: ApiClient, services, dag_ids: Sequence[str], deadline: float) -> None:
    """Until every DAG of ``dag_ids`` is registered; raises on a DAG file that does not import."""
    while True:
        services.raise_if_stopped()
        errors = {e["filename"]: e["stack_trace"] for e in client.pages("/api/v2/importErrors", "import_errors")}
        if errors:
            raise RuntimeError(f"DAG import errors: {errors}")
        known = {dag["dag_id"] for dag in client.pages("/api/v2/dags", "dags")}
        if not (missing := sorted(set(dag_ids) - known)):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"DAGs of the chain not registered by the dag-processor: {missing}")
        time.sleep(2)


def log_message(line: str) -> str:
    """The message of a task log line: Airflow 3 writes JSON lines (``event`` is the message)."""
    try:
        return str(json.loads(line).get("event", ""))
    except (ValueError, AttributeError):
        return line.strip()


class ApiClient:
    """The api-server's public REST API as ``login``; logs in again when the token expired."""

    def __init__(self, base_url: str, login: Login, transport: httpx.BaseTransport | None = None):
        self.login_as = login
        self.http = httpx.Client(base_url=base_url, timeout=60, transport=transport)

    def healthy(self) -> bool:
        try:
            return self.http.get("/api/v2/monitor/health").status_code == 200
        except httpx.TransportError:
            return False

    def login(self) -> None:
        response = self.http.post(
            "/auth/token", json={"username": self.login_as.username, "password": self.login_as.password}
        )
        if response.status_code >= 400:
            raise RuntimeError(
                f"The api-server refused user {self.login_as.username!r} ({response.status_code}: {response.text}); "
                f"the launcher sets its password in {passwords_file()} ([core] auth_manager must be the simple one)"
            )
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def request(self, method: str, path: str, attempts: int = 3, **kwargs) -> dict:
        """One call; an idempotent one (GET, PATCH) that met a busy metadata DB (SQLite: "database is
        locked", a 500) is tried again, so one slow write elsewhere does not end a demo."""
        for attempt in range(1, attempts + 1):
            response = self.http.request(method, path, **kwargs)
            if response.status_code == 401:
                self.login()
                response = self.http.request(method, path, **kwargs)
            if response.status_code < 500 or method not in ("GET", "PATCH") or attempt == attempts:
                break
            log.warning("%s %s: %s, trying again", method, path, response.status_code)
            time.sleep(attempt)
        response.raise_for_status()
        return response.json()

    def pages(self, path: str, key: str, **params):
        """Every item of a paginated collection (``key`` is its list), page by page.

        Only GETs: the POST ``.../list`` endpoints write an audit row to the metadata DB per call,
        and on SQLite every write competes with the scheduler's and the tasks' for the one lock.
        """
        offset = 0
        while True:
            page = self.request("GET", path, params={**params, "limit": PAGE, "offset": offset})
            items = page[key]
            yield from items
            offset += len(items)
            if not items or offset >= page["total_entries"]:
                return


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _segment(value: str) -> str:
    """A path segment: run ids hold ``+`` and ``:`` (``asset_triggered__2026-...+00:00_x``)."""
    return quote(value, safe="")


def _run(r: dict) -> Run:
    return Run(r["dag_id"], r["dag_run_id"], r["state"], r["run_type"], _time(r["start_date"]), _time(r["end_date"]))


RUNS = "/api/v2/dags/~/dagRuns"
TASK_INSTANCES = "/api/v2/dags/~/dagRuns/~/taskInstances"


class RestProgress:
    """:class:`launcher.progress.Progress` on the REST API v2, reads only (GET); XCom values are read
    once each. Lists are filtered by DAG here: the GET endpoints take one DAG or all (``~``)."""

    def __init__(self, client: ApiClient):
        self.client = client
        self.values: dict[tuple, object] = {}

    def runs(self, dag_ids: Sequence[str], since: datetime) -> list[Run]:
        runs = self.client.pages(RUNS, "dag_runs", start_date_gte=since.isoformat(), order_by="id")
        # The filter lets through queued runs that have not started (no start date).
        return [_run(r) for r in runs if r["dag_id"] in dag_ids and r["start_date"]]

    def failed_tasks(self, runs: Sequence[Run]) -> list[str]:
        return [
            f"{ti['dag_id']}.{ti['task_id']}[{ti['map_index']}] {ti['state']}"
            for run in runs
            for ti in self.client.pages(
                f"/api/v2/dags/{_segment(run.dag_id)}/dagRuns/{_segment(run.run_id)}/taskInstances",
                "task_instances",
                state=list(FAILED_TASK_STATES),
            )
        ]

    def active_tasks(self, dag_ids: Sequence[str], ignore_task: str) -> int:
        tis = self.client.pages(TASK_INSTANCES, "task_instances", state=list(ACTIVE_TASK_STATES))
        return sum(ti["dag_id"] in dag_ids and ti["task_id"] != ignore_task for ti in tis)

    def queued_by_data(self, dag_ids: Sequence[str]) -> int:
        return sum(
            self.client.request("GET", f"/api/v2/dags/{_segment(dag_id)}/assets/queuedEvents")["total_entries"]
            for dag_id in dag_ids
        )

    def active_runs(self, dag_ids: Sequence[str]) -> list[Run]:
        runs = self.client.pages(RUNS, "dag_runs", state=["queued", "running"])
        return [_run(r) for r in runs if r["dag_id"] in dag_ids]

    def start_delays(self, dag_ids: Sequence[str], since: datetime) -> list[float]:
        tis = self.client.pages(TASK_INSTANCES, "task_instances", start_date_gte=since.isoformat())
        return [
            (_time(ti["start_date"]) - _time(ti["queued_when"])).total_seconds()
            for ti in tis
            if ti["dag_id"] in dag_ids and ti["queued_when"] and ti["start_date"]
        ]

    def return_values(self, dag_id: str, task_id: str, since: datetime) -> list:
        """Newest first, until one is older than ``since``; each value is fetched once (by its timestamp:
        a retried task's new value is a new entry). An entry a page boundary shows twice counts once."""
        dag, task = _segment(dag_id), _segment(task_id)
        params = {"xcom_key": "return_value", "order_by": "-timestamp"}
        values = {}
        for entry in self.client.pages(
            f"/api/v2/dags/{dag}/dagRuns/~/taskInstances/{task}/xcomEntries", "xcom_entries", **params
        ):
            if _time(entry["timestamp"]) < since:
                break
            key = (dag_id, entry["run_id"], task_id, entry["map_index"], entry["timestamp"])
            if key not in self.values:
                self.values[key] = self.client.request(
                    "GET",
                    f"/api/v2/dags/{dag}/dagRuns/{_segment(entry['run_id'])}/taskInstances/{task}/xcomEntries/return_value",
                    params={"map_index": entry["map_index"], "deserialize": True},
                )["value"]
            values[key] = self.values[key]
        return list(values.values())
