"""The Astro SDK seam: a file of ``sql/`` run on MRI_DB_CONN_ID, its rows handed to Python as a DataFrame.

- Airflow 2 (the stack this project was asked for): ``aql.transform`` turns the file into a
  temporary table on the connection, ``aql.dataframe`` reads that table into the DataFrame the
  Python step takes, and ``aql.cleanup`` drops the table as a teardown.
- Airflow 3: astro-sdk does not import there, so the SQL step runs the same file through
  ``include.db`` (the same connection id, each ``{{ name }}`` bound by the backend's placeholder,
  never pasted in) and passes the rows on; the Python step gets the same DataFrame.

Both give the same two task ids, so the graph, the notifications and the tests are the same.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from include.config import settings
from include.db import queries
from include.wiring.compat import AIRFLOW_V_3_0_PLUS, task


def sql_dataframe(
    sql_file: str,
    parameters: dict[str, Any],
    python_callable: Callable[[Any], Any],
    *,
    sql_task_id: str,
    task_id: str,
    pool: str,
    **python_task_kwargs: Any,
) -> tuple[Any, Any]:
    """The SQL step and the Python step it feeds; returns both (wire upstream tasks to the first,
    downstream ones to the second).

    :param sql_file: a file name in ``sql/``.
    :param parameters: the values of the file's ``{{ name }}`` markers.
    :param python_callable: takes the rows as a ``pandas.DataFrame``; what it returns is the task's XCom.
    :param pool: the registry pool both steps run in.
    :param python_task_kwargs: more arguments of the Python step (``outlets``, callbacks...).
    """
    sql = queries.sql_file(sql_file)
    if not AIRFLOW_V_3_0_PLUS:
        from astro import sql as aql

        def render_sql(**_: Any) -> str:
            return sql

        # The Astro SDK reads the SQL function's signature for the names its arguments bind to.
        render_sql.__signature__ = inspect.Signature(
            [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in parameters]
        )
        rows = aql.transform(conn_id=settings().db_conn_id, task_id=sql_task_id, pool=pool)(render_sql)(**parameters)
        result = aql.dataframe(task_id=task_id, multiple_outputs=False, pool=pool, **python_task_kwargs)(
            python_callable
        )(rows)
        # A teardown drops exactly this temp table, right away (no waiting, no retries spent), runs
        # even if the Python step failed, and never decides the run's state.
        result >> aql.cleanup(tables_to_cleanup=[rows], run_sync_mode=True, pool=pool).as_teardown(setups=rows)
        return rows, result

    @task(task_id=sql_task_id, pool=pool)
    def run_sql() -> list[dict]:
        from include.db import get_database

        db = get_database()
        return db.fetch_records(*queries.bound(sql, parameters, db.placeholder))

    @task(task_id=task_id, multiple_outputs=False, pool=pool, **python_task_kwargs)
    def on_dataframe(records: list[dict]) -> Any:
        import pandas as pd

        return python_callable(pd.DataFrame.from_records(records))

    rows = run_sql()
    return rows, on_dataframe(rows)
