"""What the tests read back from Airflow's metadata DB (the test process may; tasks may not), from
where the running major keeps it: Dataset events are Asset events on Airflow 3, and XComs are rows
of XComModel there."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text, cast, func, select

from include.wiring.compat import AIRFLOW_V_3_0_PLUS

if AIRFLOW_V_3_0_PLUS:
    from airflow.models.asset import AssetEvent as DataEvent
    from airflow.models.xcom import XComModel as XCom
else:
    from airflow.models.dataset import DatasetEvent as DataEvent
    from airflow.models.xcom import XCom
from airflow.utils.session import create_session


def dataset_events(uri: str, source_run_ids: list[str]) -> int:
    """How many events of the Dataset (Asset) ``uri`` the runs ``source_run_ids`` emitted."""
    target = DataEvent.asset if AIRFLOW_V_3_0_PLUS else DataEvent.dataset
    with create_session() as session:
        query = session.query(DataEvent).filter(target.has(uri=uri), DataEvent.source_run_id.in_(source_run_ids))
        return query.count()


def xcom_sizes(dag_id: str, run_id: str) -> dict[tuple[str, int], int]:
    """Bytes of every XCom value the run stored, per (task_id, map_index)."""
    # A JSON column on Airflow 3, bytes on Airflow 2: its length as stored either way.
    size = func.length(cast(XCom.value, Text)) if AIRFLOW_V_3_0_PLUS else func.length(XCom.value)
    with create_session() as session:
        rows = session.execute(
            select(XCom.task_id, XCom.map_index, size).where(XCom.dag_id == dag_id, XCom.run_id == run_id)
        ).all()
    return {(task_id, map_index): value for task_id, map_index, value in rows}


def xcom_value(run: Any, task_id: str) -> Any:
    """What ``task_id`` returned in ``run`` (map index -1)."""
    if not AIRFLOW_V_3_0_PLUS:
        return XCom.get_one(run_id=run.run_id, dag_id=run.dag_id, task_id=task_id)
    with create_session() as session:
        row = session.execute(
            select(XCom.value).where(
                XCom.dag_id == run.dag_id,
                XCom.run_id == run.run_id,
                XCom.task_id == task_id,
                XCom.map_index == -1,
                XCom.key == "return_value",
            )
        ).scalar_one()
    from airflow.sdk.serde import deserialize  # the Task SDK wrote it with serde (a tuple stays a tuple)

    return deserialize(XCom.deserialize_value(type("Result", (), {"value": row})()))


def pool_slots(name: str) -> int | None:
    """The slots of Airflow's pool ``name``, or None where there is no such pool."""
    from airflow.models.pool import Pool

    with create_session() as session:
        return session.execute(select(Pool.slots).where(Pool.pool == name)).scalar_one_or_none()


def register(dag: Any) -> Any:
    """Write ``dag`` and its Datasets (Assets) to the metadata DB, as the DAG processor does, so
    ``dag.test()`` can emit events for them; returns the DAG."""
    if not AIRFLOW_V_3_0_PLUS:
        dag.sync_to_db()
        return dag
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()  # the "dags-folder" bundle row the DAG refers to
    bag = DagBag(dag_folder=[], collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag


def run_task_again(dag: Any, run: Any, task_id: str, map_index: int) -> None:
    """Run one finished task instance of ``run`` again, as a retry or a cleared task does: with its
    run id and map index, so the ids it derives are the same. Airflow 3 has no ``TaskInstance.run``;
    ``airflow tasks test`` runs it there, from the DAG file of the same id."""
    if not AIRFLOW_V_3_0_PLUS:
        ti = run.get_task_instance(task_id, map_index=map_index)
        ti.task = dag.get_task(task_id)
        ti.run(ignore_all_deps=True, ignore_ti_state=True, test_mode=True)
        return
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "airflow", "tasks", "test", dag.dag_id, task_id, run.run_id]
    done = subprocess.run(
        [*command, "--map-index", str(map_index)], capture_output=True, text=True, env=os.environ.copy()
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
