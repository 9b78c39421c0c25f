"""What every DAG of the pipeline shares: owner, retries, start date."""

from __future__ import annotations

from datetime import timedelta

import pendulum

DEFAULT_ARGS = {
    "owner": "mri-platform",
    # An unreachable store or database is retried; each task is idempotent, so a retry redoes it
    # whole: ingestion resumes from what is still in landing, a registry batch is one transaction.
    "retries": 3,
    "retry_delay": timedelta(seconds=15),
}
START_DATE = pendulum.datetime(2024, 1, 1, tz="UTC")
