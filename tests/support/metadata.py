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
    return XCom.deserialize_value(type("Result", (), {"value": row})())
