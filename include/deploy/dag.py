"""The deploy DAG (dags/deploy_best_model.py): pick the best model in SQL, decide, promote atomically."""

# No `from __future__ import annotations`: aql.dataframe reads the real `pd.DataFrame` annotation
# to turn the ranking table into a DataFrame.
import logging

import pandas as pd

from include.config import settings
from include.wiring.compat import DAG, AirflowFailException, AirflowSkipException, get_current_context, task
from include.wiring.datasets import MODEL_DEPLOYED, MODEL_EVALUATED
from include.wiring.defaults import pipeline_dag
from include.wiring.notifications import notify_on
from include.wiring.setup import apply_db_migrations
from include.wiring.sql import sql_dataframe

log = logging.getLogger(__name__)


def build_deploy_dag(doc_md: str) -> DAG:
    """SQL ranks, a DataFrame step decides (the Astro SDK on Airflow 2, see include/wiring/sql.py), one
    task promotes and emits ``model_deployed``.

    :param doc_md: the DAG file's docstring, shown in the UI.
    """
    cfg = settings()
    # Every task that opens the registry runs in this pool; its size follows the backend.
    in_db_pool = {"pool": cfg.db_pool}

    # One decision at a time: a second run would compare against a production that is changing.
    @pipeline_dag("deploy_best_model", [MODEL_EVALUATED], doc_md, ["deploy"])
    def deploy():
        # The task functions are named apart from the include.deploy functions they call; the task ids
        # (decide, promote) stay the ones the notifications' templates and the UI name.
        def decide_on_ranking(ranking: pd.DataFrame) -> dict:
            """Promote or not, and why; a "no" is recorded here, a "yes" by the promotion itself."""
            from include.db import get_database
            from include.deploy.decision import decide
            from include.deploy.promotion import production_model_id, record_decision
            from include.ml.evaluate import paired_gain_of
            from include.training.records import LEARNED_BASELINE, latest_result

            db = get_database()
            rows = ranking.to_dict("records")
            # The learned baseline on the ranking's snapshot (one snapshot: the latest gated one).
            snapshots = {row["test_snapshot"] for row in rows if isinstance(row["test_snapshot"], str)}
            baseline = latest_result(db, LEARNED_BASELINE, snapshots.pop()) if snapshots else None
            decision = decide(
                rows,
                production_model_id(db),
                cfg.selection_metric,
                cfg.promotion_margin,
                baseline=baseline,
                min_gain_over_baseline=cfg.min_gain_over_baseline,
                compare=lambda winner, production: paired_gain_of(
                    winner["predictions"],
                    production["predictions"],
                    cfg.labels,
                    cfg.selection_metric,
                    cfg.bootstrap_resamples,
                    cfg.evaluations_dir,
                ),
            )
            log.info("%s: %s", "PROMOTE" if decision.promote else "KEEP", decision.reason)
            if not decision.promote:
                record_decision(db, get_current_context()["run_id"], decision)
            return decision.as_dict()

        @task(
            task_id="promote",
            outlets=[MODEL_DEPLOYED],
            **in_db_pool,
            **notify_on(
                success="Promoted {{ ti.xcom_pull(task_ids='promote')['model_id'] }} to production "
                "({{ ti.xcom_pull(task_ids='promote')['reason'] }}){{ ti.xcom_pull(task_ids='promote')['mirror'] }}",
                failure="Promotion failed; production is unchanged (registry and bundle roll back together).",
            ),
        )
        def promote_decided_model(decision: dict, **context) -> dict:
            """Stages in one transaction, the bundle switched inside it; skipped (no Dataset event) on "no"."""
            from include.db import get_database
            from include.deploy.decision import Decision, PromotionError
            from include.deploy.mirror import MirrorError, publisher
            from include.deploy.promotion import promote, reconcile
            from include.deploy.releases import LocalBundles

            db, bundles = get_database(), LocalBundles(cfg.production_dir)
            reconcile(db, bundles)
            chosen = Decision(**decision)
            if not chosen.promote:
                raise AirflowSkipException(f"Not promoted: {chosen.reason}")
            mirror = ""
            try:
                release = promote(db, chosen, context["run_id"], bundles, publisher(cfg.publish_target))
            except MirrorError as err:
                # Production changed: succeed (model_deployed is emitted) and say what was not copied.
                log.error("Production changed, but %s", err)
                release, mirror = err.release, f"; WARNING: {err}"
            except PromotionError as err:
                # A refused release, production changed meanwhile, a hand-made `current`: a retry
                # would meet the same; production is unchanged and the message says what to do.
                raise AirflowFailException(f"Not promoted: {err}") from err
            log.info("Serving %s from %s", chosen.model_id, bundles.release_dir(release))
            return {
                "mirror": mirror,
                "model_id": chosen.model_id,
                "release": release,
                "bundle": str(bundles.current),
                "reason": chosen.reason,
                "previous_model_id": chosen.previous_model_id,
            }

        # The metric is bound as a value into the SQL file's {{ metric }}, never pasted in.
        ranking, decision = sql_dataframe(
            "pick_best_model.sql",
            {"metric": cfg.selection_metric},
            decide_on_ranking,
            sql_task_id="pick_best_model",
            task_id="decide",
            pool=cfg.db_pool,
        )
        apply_db_migrations() >> ranking
        promote_decided_model(decision)

    return deploy()
