"""The quality-gate DAG, built once per split (dags/quality_gate_<split>.py), and the on-demand
report DAG (dags/data_quality_report.py). The work is in ``include.quality``, imported inside the
tasks: Great Expectations is never imported while the scheduler parses these files."""

from __future__ import annotations

import logging

from include.config import settings
from include.wiring.compat import DAG, AirflowFailException, AirflowSkipException, task
from include.wiring.datasets import GATE_PASSED, IMAGES
from include.wiring.defaults import pipeline_dag
from include.wiring.notifications import notify_on
from include.wiring.setup import apply_db_migrations

log = logging.getLogger(__name__)


def build_quality_gate_dag(split: str, doc_md: str) -> DAG:
    """images/<split> -> validate the snapshot -> quality/passed/<split>, only when it passed.

    :param split: ``train`` or ``test``.
    :param doc_md: the DAG file's docstring, shown in the UI.
    """
    cfg = settings()

    @pipeline_dag(f"quality_gate_{split}", [IMAGES[split]], doc_md, ["quality", split])
    def quality_gate():
        # retries=0: a failed expectation is a fact about the data, not a transient error. A
        # failing gate fails here, so `announce` never runs and nothing is emitted.
        @task(
            pool=cfg.db_pool,
            retries=0,
            multiple_outputs=False,
            **notify_on(
                success=f"quality gate {split} passed: {{{{ ti.xcom_pull(task_ids=ti.task_id) }}}}",
                failure=f"quality gate {split} failed; gated data for {split} is unchanged. Data Docs: "
                f"{cfg.quality_dir}",
            ),
        )
        def validate_snapshot(**context) -> dict:
            """Validate the split's snapshot, record it in quality_runs; fail naming each failed expectation."""
            from include.db import get_database
            from include.quality import QualityGateFailed, run_gate
            from include.registry.snapshots import passed_snapshot_id

            db = get_database()
            previous = passed_snapshot_id(db, split)
            try:
                outcome = run_gate(db, split, context["run_id"])
            except QualityGateFailed as failed:
                raise AirflowFailException(str(failed)) from None
            return outcome.summary() | {"previous_snapshot": previous}

        @task(outlets=[GATE_PASSED[split]], multiple_outputs=False)
        def announce(gate: dict) -> str:
            """Emit quality/passed/<split> only for a snapshot not passed before: the same data
            again (a re-upload of known files) retrains and re-evaluates nothing."""
            if gate["snapshot"] == gate["previous_snapshot"]:
                raise AirflowSkipException(f"Snapshot {gate['snapshot'][:12]} passed before; nothing new downstream.")
            log.info("New gated snapshot %s of %s: %s images", gate["snapshot"][:12], split, gate["images"])
            return gate["snapshot"]

        apply_db_migrations() >> announce(validate_snapshot())

    return quality_gate()


def build_quality_report_dag(doc_md: str) -> DAG:
    """By hand: validate both splits now and write the Data Docs; gates and records nothing.

    :param doc_md: the DAG file's docstring, shown in the UI.
    """
    cfg = settings()

    @pipeline_dag("data_quality_report", None, doc_md, ["quality", "report"])
    def data_quality_report():
        @task(pool=cfg.db_pool, multiple_outputs=False)
        def validate_both_splits(**context) -> dict:
            """The report passes whatever the data's verdict: it shows it, it does not act on it."""
            from include.db import get_database
            from include.quality import run_report

            outcomes = run_report(get_database(), context["run_id"])
            log.info("Data Docs index: %s", next(iter(outcomes.values())).index)
            return {split: outcome.summary() for split, outcome in outcomes.items()}

        apply_db_migrations() >> validate_both_splits()

    return data_quality_report()
