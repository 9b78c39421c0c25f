"""Promotion: make the decided model production in the registry and on disk, together.

Invariants, each kept by one function:

- :func:`promote` serves only a release that loads and classifies a probe image
  (:func:`include.deploy.assemble.check_release`, on the staged folder, before anything points at
  it); a refused release is recorded as a decision not to promote, with the reason.
- :func:`promote` changes the ``models`` stages in one transaction and switches the served bundle
  (:mod:`include.deploy.releases`) inside it, just before the commit; any exception up to and
  including the commit rolls the registry back and points ``current`` back at the previous
  release. So the registry and the bundle move together or not at all.
- Promotions are serialized in the database (``lock_for_promotion``, the transaction's first
  statement): of two promotions decided against the same production, the second finds production
  changed and changes nothing, so the registry never names two production models.
- :func:`reconcile` repairs the one window no exception covers (the process killed between the
  symlink switch and the commit): the registry is the truth, and ``current`` is re-pointed at the
  newest release of the registry's production model. It only ever re-points ``current`` at a
  release of the model the registry names; a registry that names none (a fresh one, a wrong
  MRI_DB_CONN_ID) leaves what is served alone.

Nothing here builds SQL from data: values are bound.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable

from include.db import RegistryDatabase
from include.deploy.assemble import build_bundle, check_release
from include.deploy.decision import Decision, PromotionError
from include.deploy.mirror import MirrorError, StorageMirror
from include.deploy.releases import LocalBundles, release_name

log = logging.getLogger(__name__)

PROMOTION_COLUMNS = (
    "run_id",
    "promoted",
    "reason",
    "metric",
    "margin",
    "test_snapshot",
    "candidate_model_id",
    "candidate_result_id",
    "candidate_value",
    "previous_model_id",
    "previous_value",
    "release",
    "baseline_model_id",
    "baseline_value",
    "min_gain_over_baseline",
    "candidate_validation_value",
    "gain",
    "gain_low",
    "gain_high",
    "gain_resamples",
)
# Named points inside :func:`promote` where a checkpoint callback runs; tests raise there to prove
# that a crash at each point leaves the previous production intact.
CHECKPOINTS = ("bundle_staged", "registry_updated", "bundle_switched")


def production_model_id(db: RegistryDatabase) -> str | None:
    """The model the registry names production, or None before the first promotion."""
    rows = db.fetch_all("SELECT model_id FROM models WHERE stage = 'production' ORDER BY model_id")
    if len(rows) > 1:
        raise PromotionError(
            f"{len(rows)} models are in stage production in {db!r}: {[r[0] for r in rows]}. Only promote() "
            "changes stages; set all but one to 'archived' by hand, then run deploy_best_model again."
        )
    return rows[0][0] if rows else None


def _promotion_row(run_id: str, decision: Decision, release: str | None) -> tuple:
    d = decision
    return (
        run_id,
        d.promote,
        d.reason,
        d.metric,
        d.margin,
        d.test_snapshot,
        d.model_id,
        d.result_id,
        d.value,
        d.previous_model_id,
        d.previous_value,
        release,
        d.baseline_model_id,
        d.baseline_value,
        d.min_gain_over_baseline,
        d.validation_value,
        d.gain,
        d.gain_low,
        d.gain_high,
        d.gain_resamples,
    )


def record_decision(db: RegistryDatabase, run_id: str, decision: Decision) -> None:
    """Record a decision not to promote (a promotion records itself inside :func:`promote`). Idempotent."""
    with db.transaction() as cursor:
        db.insert_new_rows(cursor, "promotions", PROMOTION_COLUMNS, "run_id", [_promotion_row(run_id, decision, None)])


def _no_checkpoint(point: str) -> None:
    """Production code passes nothing here; tests raise at a named point."""


def promote(
    db: RegistryDatabase,
    decision: Decision,
    run_id: str,
    bundles: LocalBundles,
    mirror: StorageMirror | None = None,
    checkpoint: Callable[[str], None] = _no_checkpoint,
) -> str:
    """Make ``decision.model_id`` production in the registry and on disk, together; return the release.

    Idempotent: a retry of a run that already promoted only re-mirrors.

    :param db: the registry database.
    :param decision: a decision to promote, from :func:`decide`.
    :param run_id: the deciding run (the promotions row's key).
    :param bundles: where the served bundle lives.
    :param mirror: optional second publish target, written after the commit.
    :param checkpoint: called with each name in :data:`CHECKPOINTS` as promotion passes it.
    :raises MirrorError: when only the copy to ``mirror`` failed (production did change).
    """
    if not decision.promote:
        raise PromotionError(f"promote() got a decision not to promote: {decision.reason}")
    p = db.placeholder
    done = db.fetch_all(f"SELECT release FROM promotions WHERE run_id = {p} AND promoted", (run_id,))
    if done:
        release = done[0][0]
        log.info("Run %s already promoted %s (release %s)", run_id, decision.model_id, release)
    else:
        release = _promote_once(db, decision, run_id, bundles, checkpoint)
    if mirror is not None:
        try:
            mirror.publish(bundles.release_dir(release))
        except Exception as err:
            # After the commit and the switch: not a failed promotion, and must not be reported as one.
            raise MirrorError(decision.model_id, release, f"storage:{mirror.prefix}", err) from err
    return release


def _promote_once(
    db: RegistryDatabase, decision: Decision, run_id: str, bundles: LocalBundles, checkpoint: Callable[[str], None]
) -> str:
    p = db.placeholder
    release = release_name(decision.model_id)
    previous_release = bundles.current_release()
    # 1. The bundle, complete, loadable and durable, under a new name: nothing serves it yet.
    staging = bundles.new_staging()
    try:
        try:
            build_bundle(db, decision, run_id, release, staging)
            check_release(staging, decision.model_id)
        except PromotionError as err:
            _record_refusal(db, run_id, decision, err)
            raise
        bundles.finish(staging, release)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("Bundle of %s written to %s", decision.model_id, bundles.release_dir(release))
    checkpoint("bundle_staged")
    # 2. Stages and the promotions row in one transaction, the symlink switched just before the
    #    commit; any failure through the commit undoes both.
    switched = False
    try:
        with db.transaction() as cursor:
            # Serializes promotions (Postgres: an advisory lock held to the commit), so the check
            # below reads what a promotion that committed meanwhile wrote, and refuses.
            db.lock_for_promotion(cursor)
            cursor.execute("SELECT model_id FROM models WHERE stage = 'production'")
            now = sorted(row[0] for row in cursor.fetchall())
            expected = [decision.previous_model_id] if decision.previous_model_id else []
            if now != expected:
                raise PromotionError(
                    f"Production changed since the decision: it was {expected or 'none'}, it is {now or 'none'}. "
                    "Nothing was changed; the next deploy_best_model run decides again."
                )
            cursor.execute("UPDATE models SET stage = 'archived' WHERE stage = 'production'")
            cursor.execute(f"UPDATE models SET stage = 'production' WHERE model_id = {p}", (decision.model_id,))
            # A refusal this run recorded before (a bundle restored, then the task cleared) is replaced.
            cursor.execute(f"DELETE FROM promotions WHERE run_id = {p} AND NOT promoted", (run_id,))
            db.insert_new_rows(
                cursor, "promotions", PROMOTION_COLUMNS, "run_id", [_promotion_row(run_id, decision, release)]
            )
            checkpoint("registry_updated")
            bundles.switch(release)
            switched = True
            checkpoint("bundle_switched")
    except BaseException:
        if switched:
            bundles.switch(previous_release)
            log.error("Promotion of %s failed before its commit; serving %s again", decision.model_id, previous_release)
        raise
    log.info("Promoted %s (release %s), archived %s", decision.model_id, release, decision.previous_model_id)
    bundles.prune()
    return release


def _record_refusal(db: RegistryDatabase, run_id: str, decision: Decision, err: PromotionError) -> None:
    """Record that the decided promotion was refused at promotion time, and why."""
    reason = f"Refused at promotion: {err} (decided: {decision.reason})"
    record_decision(db, run_id, dataclasses.replace(decision, promote=False, reason=reason))
    log.error("Not promoting %s: %s", decision.model_id, err)


def reconcile(db: RegistryDatabase, bundles: LocalBundles) -> str | None:
    """Point ``current`` at the registry's production model if they disagree; return what is served.

    They disagree only if a process died between the symlink switch and the commit (no exception
    handler ran). The registry is the truth; the newest release of its production model is served.
    A registry that names no production model is not a reason to serve nothing: it is a fresh
    registry or the wrong one (MRI_DB_CONN_ID), so ``current`` is left alone and that is logged.
    """
    production = production_model_id(db)
    served = (bundles.deployment() or {}).get("model_id")
    if served == production:
        return bundles.current_release()
    if production is None:
        log.error(
            "%r names no production model, but %s serves %s; leaving it served. A fresh registry or the wrong "
            "one (MRI_DB_CONN_ID)? The next promotion in this registry replaces it.",
            db,
            bundles.current,
            served,
        )
        return bundles.current_release()
    candidates = []
    if bundles.releases.is_dir():
        for path in bundles.releases.iterdir():
            record = bundles.deployment(path.name) if not path.name.startswith(".") else None
            if record and record["model_id"] == production:
                candidates.append((record["promoted_at"], path.name))
    if not candidates:
        log.error(
            "Registry names %s production but no release of it is in %s; the next promotion publishes one.",
            production,
            bundles.releases,
        )
        return bundles.current_release()
    release = max(candidates)[1]
    log.warning("Served bundle (%s) disagreed with the registry (%s); now serving %s", served, production, release)
    bundles.switch(release)
    return release
