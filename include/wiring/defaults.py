"""What every DAG of the pipeline shares: owner, retries, start date, one run at a time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum

DEFAULT_ARGS = {
    "owner": "mri-platform",
    # An unreachable store or database is retried; each task is idempotent, so a retry redoes it
    # whole: ingestion resumes from what is still in landing, a registry batch is one transaction.
    # A configuration error is not retried (include.wiring.compat.task): it fails the same every time.
    "retries": 3,
    "retry_delay": timedelta(seconds=15),
}
START_DATE = pendulum.datetime(2024, 1, 1, tz="UTC")


def pipeline_dag(dag_id: str, schedule: Any, doc_md: str, tags: list[str], **kwargs: Any):
    """``@dag`` with what every DAG here shares: one run at a time (each run reads what the
    previous one wrote), no catch-up, the default args, and the ``mri`` tag.

    :param doc_md: the DAG file's docstring, shown in the UI.
    :param kwargs: any other ``@dag`` argument (``params``...).
    """
    from include.wiring.compat import dag

    return dag(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        doc_md=doc_md,
        default_args=DEFAULT_ARGS,
        tags=["mri", *tags],
        **kwargs,
    )
