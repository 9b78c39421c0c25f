"""The continuous ingestion DAG, built once per split (dags/in_new_<split>_data.py)."""

from __future__ import annotations

import logging
from collections import Counter

from airflow.decorators import dag, task
from airflow.exceptions import AirflowSkipException
from airflow.models.dag import DAG

from include.config import settings
from include.dag_defaults import DEFAULT_ARGS, START_DATE
from include.datasets import RAW
from include.ingestion import batches, ingest_file, landing_prefix, write_outcome_log
from include.storage import get_storage

log = logging.getLogger(__name__)


def build_ingestion_dag(split: str, doc_md: str) -> DAG:
    """Wait for files in landing/<split>/, move them to raw/<split>/ in mapped batches.

    :param split: ``train`` or ``test``.
    :param doc_md: the DAG file's docstring, shown in the UI.
    """
    cfg = settings()

    @dag(
        dag_id=f"in_new_{split}_data",
        schedule="@continuous",
        max_active_runs=1,
        start_date=START_DATE,
        catchup=False,
        doc_md=doc_md,
        default_args=DEFAULT_ARGS,
        tags=["mri", "ingestion", split],
    )
    def ingestion():
        # Deferrable: the wait costs a triggerer coroutine, not a worker slot.
        wait_for_files = get_storage().landing_sensor(
            "wait_for_landing_files", landing_prefix(split), cfg.sensor_poke_seconds
        )

        @task
        def list_landing_batches() -> list[list[str]]:
            """The snapshot this run owns: files arriving later wait for the next run."""
            keys = [o.key for o in get_storage().list(landing_prefix(split))]
            log.info("%s files in landing/%s, %s per batch", len(keys), split, cfg.move_batch_size)
            return batches(keys, cfg.move_batch_size)

        @task(map_index_template="{{ task.op_kwargs['keys'][0] | default('') }}", multiple_outputs=False)
        def move_batch(keys: list[str], **context) -> dict:
            storage = get_storage()
            outcomes = [ingest_file(storage, key, split) for key in keys]
            log_key = write_outcome_log(storage, split, context["run_id"], context["ti"].map_index, outcomes)
            counts = Counter(o.outcome for o in outcomes)
            log.info("Batch of %s: %s; outcomes in %s", len(keys), dict(counts), log_key)
            return {
                "counts": dict(counts),
                "quarantined": {o.source: o.reason for o in outcomes if o.reason},
                "log": storage.uri(log_key),
            }

        @task(outlets=[RAW[split]], multiple_outputs=False)
        def summarize(results: list[dict]) -> dict:
            """Emit raw/<split> only if something new reached raw/."""
            counts: Counter = Counter()
            for result in results:
                counts.update(result["counts"])
            summary = {
                "counts": dict(counts),
                "quarantined": {k: v for r in results for k, v in r["quarantined"].items()},
                "logs": [r["log"] for r in results],
            }
            log.info("landing/%s -> raw/%s: %s", split, split, summary["counts"])
            if not counts["moved"]:
                raise AirflowSkipException("No new image reached raw/; the registry has nothing to do.")
            return summary

        listed = list_landing_batches()
        wait_for_files >> listed
        summarize(move_batch.expand(keys=listed))

    return ingestion()
