"""The continuous ingestion DAG, built once per split (dags/in_new_<split>_data.py)."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from include.config import settings
from include.ingestion.mover import (
    batch_keys_key,
    batches,
    capped_batch_size,
    first_reasons,
    landing_prefix,
    max_mapped_batches,
    move_files,
    name_batch,
    write_outcome_log,
    write_pending_manifest,
)
from include.storage import get_storage
from include.wiring.compat import DAG, AirflowSkipException, task
from include.wiring.datasets import RAW
from include.wiring.defaults import pipeline_dag

log = logging.getLogger(__name__)


def build_ingestion_dag(split: str, doc_md: str) -> DAG:
    """Wait for files in landing/<split>/, move them to raw/<split>/ in mapped batches.

    :param split: ``train`` or ``test``.
    :param doc_md: the DAG file's docstring, shown in the UI.
    """
    cfg = settings()

    @pipeline_dag(f"in_new_{split}_data", "@continuous", doc_md, ["ingestion", split])
    def ingestion():
        # Deferrable: the wait costs a triggerer coroutine, not a worker slot.
        wait_for_files = get_storage().landing_sensor(
            "wait_for_landing_files", landing_prefix(split), cfg.sensor_poke_seconds
        )

        # Nothing may hang a continuous DAG: a stuck read or a stalled store fails the task in time.
        timeout = timedelta(minutes=cfg.batch_timeout_minutes)

        @task(execution_timeout=timeout)
        def list_landing_batches(**context) -> list[str]:
            """The snapshot this run owns: files arriving later wait for the next run. Each batch's
            keys are written to storage and passed by reference: XCom stays a few kB, and a file
            name that is not UTF-8 travels as JSON escapes (Airflow 3 carries XComs as JSON)."""
            storage = get_storage()
            keys = [o.key for o in storage.list(landing_prefix(split))]
            size = capped_batch_size(len(keys), cfg.move_batch_size, max_mapped_batches())
            log.info("%s files in landing/%s, %s per batch", len(keys), split, size)
            run_id = context["run_id"]
            return [
                storage.write_json(batch_keys_key(split, run_id, number), chunk)
                for number, chunk in enumerate(batches(keys, size))
            ]

        # The UI name of a batch: its first key, set by the task (see batch_name).
        @task(map_index_template="{{ batch_name | default('') }}", multiple_outputs=False, execution_timeout=timeout)
        def move_batch(batch_keys: str, **context) -> dict:
            """Every key gets an outcome, logged in storage before the task ends; a failed file is
            that file's outcome, never the batch's."""
            storage = get_storage()
            keys = storage.read_json(batch_keys)
            name_batch(keys)
            run_id, batch = context["run_id"], context["ti"].map_index
            # A batch that dies for good (an outage outlasting the retries) after copying files
            # leaves this rescan request, so those files are still registered.
            write_pending_manifest(storage, split, run_id, batch, None)
            outcomes = move_files(storage, keys, split, cfg.ingest_attempts)
            # Before the outcome log: a batch that ends has told the registry what to register.
            write_pending_manifest(storage, split, run_id, batch, outcomes)
            log_key = write_outcome_log(storage, split, run_id, batch, outcomes)
            counts = Counter(o.outcome for o in outcomes)
            log.info("Batch of %s: %s; outcomes in %s", len(keys), dict(counts), log_key)
            return {
                "counts": dict(counts),
                "in_raw": sum(o.in_raw for o in outcomes),
                "quarantined": first_reasons((o.source, o.reason) for o in outcomes if o.outcome == "quarantined"),
                "failed": first_reasons((o.source, o.reason) for o in outcomes if o.outcome == "failed"),
                "log": storage.uri(log_key),
            }

        @task(outlets=[RAW[split]], multiple_outputs=False)
        def summarize(results: list[dict]) -> dict:
            """Emit raw/<split> if anything may be in raw/ unregistered: a new file, a duplicate
            whose copy a crashed run left there, or a file an earlier try moved."""
            counts: Counter = Counter()
            for result in results:
                counts.update(result["counts"])
            summary = {
                "counts": dict(counts),
                # The first reasons only (see MAX_REASONS_IN_XCOM); every one is in the logs.
                "quarantined": first_reasons(item for r in results for item in r["quarantined"].items()),
                "failed": first_reasons(item for r in results for item in r.get("failed", {}).items()),
                "logs": [r["log"] for r in results],
            }
            log.info("landing/%s -> raw/%s: %s", split, split, summary["counts"])
            for key, reason in summary["failed"].items():
                log.warning("%s: %s", key, reason)
            if not sum(r.get("in_raw", 0) for r in results):
                raise AirflowSkipException("Nothing reached raw/; the registry has nothing to do.")
            return summary

        listed = list_landing_batches()
        wait_for_files >> listed
        summarize(move_batch.expand(batch_keys=listed))

    return ingestion()
