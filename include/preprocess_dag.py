"""The preprocess DAG, built once per split (dags/preprocess_<split>_data.py): raw files -> `images`."""

# No `from __future__ import annotations`: aql.dataframe reads the real `pd.DataFrame` annotation
# to turn the summary table into a DataFrame.
import logging
from collections import Counter
from datetime import timedelta

import pandas as pd
from airflow.decorators import dag, task
from airflow.models.dag import DAG
from astro import sql as aql
from astro.files import File, get_file_list

from include.config import SQL_DIR, settings
from include.dag_defaults import DEFAULT_ARGS, START_DATE
from include.datasets import IMAGES, RAW
from include.db.setup_tasks import apply_db_migrations, ensure_db_pool
from include.ingestion import batches, name_batch
from include.storage import get_storage
from include.storage.base import is_listable

log = logging.getLogger(__name__)


def build_preprocess_dag(split: str, doc_md: str) -> DAG:
    """List raw/<split>/ with the Astro SDK, register new files in mapped batches, publish a summary.

    :param split: ``train`` or ``test``.
    :param doc_md: the DAG file's docstring, shown in the UI.
    """
    cfg = settings()
    # Every task that opens the registry runs in this pool; its size follows the backend.
    in_db_pool = {"pool": cfg.db_pool}
    # Nothing may hang a run: a stuck read or a stalled database fails the task in time.
    timeout = timedelta(minutes=cfg.batch_timeout_minutes)

    @dag(
        dag_id=f"preprocess_{split}_data",
        schedule=[RAW[split]],
        max_active_runs=1,
        start_date=START_DATE,
        catchup=False,
        doc_md=doc_md,
        default_args=DEFAULT_ARGS,
        tags=["mri", "registry", split],
    )
    def preprocess():
        raw_files = get_file_list(
            task_id="list_raw_files", path=get_storage().uri(f"raw/{split}/"), conn_id=cfg.storage_conn_id
        )

        @task(execution_timeout=timeout, **in_db_pool)
        def plan_batches(files: list[File]) -> list[list[str]]:
            """Only files not registered yet, in batches: a re-run reads nothing twice. A bad
            MRI_LABELS_CSV fails here, once, before any batch starts."""
            from include.db import get_database
            from include.registry import read_label_overrides, registered_uris, registry_uri

            storage = get_storage()
            read_label_overrides(storage, cfg.labels_csv)
            known = registered_uris(get_database(), split)
            # The Astro SDK's local listing returns folders too, and the temp file of a copy in
            # progress (a hidden name): neither is a file to register.
            new = sorted(f.path for f in files if registry_uri(f.path) not in known)
            new = [path for path in new if is_listable(path) and not storage.is_folder(storage.key(path))]
            log.info("%s files in raw/%s, %s new, %s per batch", len(files), split, len(new), cfg.register_batch_size)
            return batches(new, cfg.register_batch_size)

        # The UI name of a batch: its first uri, printable and short (see name_batch).
        @task(
            map_index_template="{{ batch_name | default('') }}",
            multiple_outputs=False,
            execution_timeout=timeout,
            **in_db_pool,
        )
        def register_batch(uris: list[str], **context) -> dict:
            from include.db import get_database
            from include.registry import Limits, fingerprint, read_label_overrides, write_records

            name_batch(uris)
            storage, run_id = get_storage(), context["run_id"]
            overrides = read_label_overrides(storage, cfg.labels_csv)
            limits = Limits(cfg.min_image_side, cfg.max_image_pixels)
            records = [fingerprint(storage, uri, split, run_id, cfg.labels, overrides, limits) for uri in uris]
            write_records(get_database(), records, run_id)
            counts = Counter(r.status for r in records)
            log.info("Registered a batch of %s: %s", len(records), dict(counts))
            return {"counts": dict(counts), "quarantined": {r.uri: r.reason for r in records if r.reason}}

        @aql.transform(conn_id=cfg.db_conn_id, **in_db_pool)
        def summarize_registry(split: str):
            """The SQL file's {{ split }} is bound to the argument by the Astro SDK, not pasted in."""
            return (SQL_DIR / "registry_summary.sql").read_text()

        @aql.dataframe(outlets=[IMAGES[split]], multiple_outputs=False, **in_db_pool)
        def publish_summary(summary: pd.DataFrame) -> dict:
            """Runs after every batch committed: the Dataset tells the quality gate rows are there."""
            counts = {f"{row.status}/{row.label}": int(row.images) for row in summary.itertuples()}
            log.info("images[%s]: %s", split, counts)
            return counts

        schema_ready = ensure_db_pool() >> apply_db_migrations()
        planned = plan_batches(raw_files)
        schema_ready >> planned
        registered = register_batch.expand(uris=planned)
        summary_table = summarize_registry(split)
        registered >> summary_table
        published = publish_summary(summary_table)
        # A teardown drops exactly the summary's temp table, right away (no waiting, no retries
        # spent), runs even if publishing failed, and never decides the run's state.
        published >> aql.cleanup(tables_to_cleanup=[summary_table], run_sync_mode=True, **in_db_pool).as_teardown(
            setups=summary_table
        )

    return preprocess()
