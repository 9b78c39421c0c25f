"""The preprocess DAG, built once per split (dags/preprocess_<split>_data.py): raw files -> `images`;
and the by-hand DAG that takes an upload back (dags/retract_upload.py)."""

# No `from __future__ import annotations`: aql.dataframe reads the real `pd.DataFrame` annotation
# to turn the summary table into a DataFrame.
import logging
from collections import Counter
from dataclasses import asdict
from datetime import timedelta

import pandas as pd

from include.config import settings
from include.ingestion.mover import (
    batches,
    capped_batch_size,
    first_reasons,
    max_mapped_batches,
    name_batch,
    pending_prefix,
)
from include.registry.retract import RETRACT_DAG_ID
from include.storage import get_storage
from include.storage.base import is_listable
from include.wiring.compat import DAG, DATA_TRIGGERED_RUN, AirflowFailException, Param, task
from include.wiring.datasets import IMAGES, RAW, SPLITS
from include.wiring.defaults import pipeline_dag
from include.wiring.setup import apply_db_migrations
from include.wiring.sql import sql_dataframe

log = logging.getLogger(__name__)


def build_preprocess_dag(split: str, doc_md: str) -> DAG:
    """Find what is new in raw/<split>/, register it in mapped batches, publish a summary.

    File lists travel between tasks as storage objects (keys in XCom), so a run's metadata cost
    follows the files it registers, not the history.

    :param split: ``train`` or ``test``.
    :param doc_md: the DAG file's docstring, shown in the UI.
    """
    cfg = settings()
    # Every task that opens the registry runs in this pool; its size follows the backend.
    in_db_pool = {"pool": cfg.db_pool}
    # Nothing may hang a run: a stuck read or a stalled database fails the task in time.
    timeout = timedelta(minutes=cfg.batch_timeout_minutes)

    @pipeline_dag(f"preprocess_{split}_data", [RAW[split]], doc_md, ["registry", split])
    def preprocess():
        @task(execution_timeout=timeout)
        def list_raw_files(**context) -> dict:
            """What this run may have to register, written to storage; XCom carries its key.

            A run the mover's Dataset started reads only the mover's pending manifests: the files
            it moved. A manual run (or ``{"reconcile": true}`` in the run's conf, or a manifest
            asking for it) lists all of raw/<split>/, so a file put there by hand is found too."""
            from include.registry.records import plan_prefix, read_manifests

            storage, dag_run = get_storage(), context["dag_run"]
            manifests = [o.key for o in storage.list(pending_prefix(split))]
            keys, rescan = read_manifests(storage, manifests)
            asked = bool((dag_run.conf or {}).get("reconcile"))
            reconcile = rescan or asked or (not manifests and dag_run.run_type != DATA_TRIGGERED_RUN)
            if reconcile:
                keys = [o.key for o in storage.list(f"raw/{split}")]
            # A hidden name is the temp file of a copy in progress: not a file to register yet.
            # (Listings hold files only, so no per-key folder check: 100k stats saved.)
            uris = [storage.uri(key) for key in sorted(set(keys)) if is_listable(key)]
            mode = "all of raw/" if reconcile else f"{len(manifests)} pending manifest(s)"
            log.info("%s candidate files in raw/%s from %s", len(uris), split, mode)
            listing = storage.write_json(
                f"{plan_prefix(split, dag_run.run_id)}/candidates.json", {"uris": uris, "manifests": manifests}
            )
            return {"listing": listing, "files": len(uris), "manifests": len(manifests), "reconcile": reconcile}

        @task(execution_timeout=timeout, **in_db_pool)
        def plan_batches(listed: dict, **context) -> list[str]:
            """Only files not registered yet, in at most MAX_MAPPED_BATCHES batches, each written
            to storage: XCom carries their keys, a few kB whatever the run's size. A bad
            MRI_LABELS_CSV fails here, once, before any batch starts."""
            from include.db import get_database
            from include.registry.records import plan_prefix, read_label_overrides, unregistered

            storage, db = get_storage(), get_database()
            read_label_overrides(storage, cfg.labels_csv)
            new = unregistered(db, storage.read_json(listed["listing"])["uris"])
            wanted = cfg.register_batch_size or db.register_batch_size
            size = capped_batch_size(len(new), wanted, max_mapped_batches())
            log.info("%s candidates in raw/%s, %s new, %s per batch", listed["files"], split, len(new), size)
            prefix = plan_prefix(split, context["run_id"])
            return [
                storage.write_json(f"{prefix}/batch-{number:05d}.json", uris)
                for number, uris in enumerate(batches(new, size))
            ]

        # The UI name of a batch: its first uri, printable and short (see name_batch).
        @task(
            map_index_template="{{ batch_name | default('') }}",
            multiple_outputs=False,
            execution_timeout=timeout,
            **in_db_pool,
        )
        def register_batch(batch: str, **context) -> dict:
            from include.db import get_database
            from include.registry.records import Limits, fingerprint, read_label_overrides, write_records

            storage, run_id = get_storage(), context["run_id"]
            uris = storage.read_json(batch)
            name_batch(uris)
            overrides = read_label_overrides(storage, cfg.labels_csv)
            limits = Limits(cfg.min_image_side, cfg.max_image_pixels, cfg.max_upload_bytes)
            records = [fingerprint(storage, uri, split, run_id, cfg.labels, overrides, limits) for uri in uris]
            write_records(get_database(), records, run_id)
            counts = Counter(r.status for r in records)
            log.info("Registered a batch of %s: %s", len(records), dict(counts))
            # The first reasons only: all of them are in `images.reason`, and XCom stays small.
            return {
                "counts": dict(counts),
                "quarantined": first_reasons((r.uri, r.reason) for r in records if r.reason),
            }

        def publish_summary(summary: pd.DataFrame) -> dict:
            """Runs after every batch committed: the Dataset tells the quality gate rows are there."""
            counts = {f"{row.status}/{row.label}": int(row.images) for row in summary.itertuples()}
            log.info("images[%s]: %s", split, counts)
            return counts

        # none_failed: a run with nothing new (its batches skipped) still retires its manifests;
        # a failed batch keeps them.
        @task(execution_timeout=timeout, trigger_rule="none_failed", **in_db_pool)
        def finish_registration(listed: dict, planned: list[str]) -> int:
            """Every batch committed: the pending manifests this run read are done, and so are its
            file lists. Deleted key by key; a manifest written since stays for the next run. A
            failed run deletes nothing, so its files come back in the next one. In the pool, as
            the last step of the registration the pool's tasks began."""
            storage = get_storage()
            manifests = storage.read_json(listed["listing"])["manifests"]
            for key in [*manifests, *planned, listed["listing"]]:
                storage.delete(key)
            return len(manifests)

        schema_ready = apply_db_migrations()
        listed = list_raw_files()
        planned = plan_batches(listed)
        schema_ready >> planned
        registered = register_batch.expand(batch=planned)
        # The split is bound as a value into the SQL file's {{ split }}, never pasted in.
        summary, published = sql_dataframe(
            "registry_summary.sql",
            {"split": split},
            publish_summary,
            sql_task_id="summarize_registry",
            task_id="publish_summary",
            pool=cfg.db_pool,
            outlets=[IMAGES[split]],
        )
        registered >> summary
        published >> finish_registration(listed, planned)

    return preprocess()


def build_retract_dag(doc_md: str) -> DAG:
    """By hand: retract one upload (include/registry/retract.py), then emit images/<split> of both
    splits so both quality gates run again.

    :param doc_md: the DAG file's docstring, shown in the UI.
    """
    cfg = settings()
    text = {"type": "string", "minLength": 1}

    @pipeline_dag(
        RETRACT_DAG_ID,
        None,
        doc_md,
        ["registry", "retract"],
        params={
            "uri": Param(description="The file, as the gate's failure message names it (image_files.uri).", **text),
            "reason": Param(description="Why it is taken back: kept in its row and in the note left in raw/.", **text),
            "retracted_by": Param(description="Who takes it back.", **text),
        },
    )
    def retract_upload():
        # Both splits: a leak or a label conflict fails the gates of both.
        @task(pool=cfg.db_pool, outlets=[IMAGES[split] for split in SPLITS], multiple_outputs=False)
        def retract(**context) -> dict:
            """Retract the upload; bad input fails at once (no retry), naming what to give instead."""
            from include.db import get_database
            from include.registry.retract import RetractionRefused, retract_upload

            params = context["params"]
            try:
                done = retract_upload(
                    get_database(), get_storage(), params["uri"], params["retracted_by"], params["reason"]
                )
            except RetractionRefused as refused:
                raise AirflowFailException(str(refused)) from None
            return asdict(done)

        apply_db_migrations() >> retract()

    return retract_upload()
