"""The promotion decision: does the pick's winner replace production? Pure, no I/O.

It compares like with like: the pick (``sql/pick_best_model.sql``) ranks results on the latest
gated test snapshot only, and a model is promoted only if, *on that snapshot*, it beats the
untrained baseline by at least ``MRI_MIN_GAIN_OVER_BASELINE`` and production by more than
``MRI_PROMOTION_MARGIN``. Without a baseline result on that snapshot nothing is promoted: a model
never shown to beat chance is not served. Every "no" carries its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

# Differences below this are float noise, not an improvement.
EPSILON = 1e-12


class PromotionError(RuntimeError):
    """Promotion cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` concluded, with the numbers it concluded it on (JSON-able for XCom)."""

    promote: bool
    reason: str
    metric: str
    margin: float
    test_snapshot: str | None = None
    model_id: str | None = None
    result_id: str | None = None
    value: float | None = None
    previous_model_id: str | None = None
    previous_value: float | None = None
    # The untrained baseline's result on the same snapshot, and the gain over it required.
    baseline_model_id: str | None = None
    baseline_value: float | None = None
    min_gain_over_baseline: float | None = None
    # The pick's model ids, best first (for the log and the UI; not stored).
    ranking: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        # A list, as JSON has it: XCom hands it back the same on both majors (serde keeps tuples).
        return {**asdict(self), "ranking": list(self.ranking)}


def decide(
    ranking: Sequence[dict[str, Any]],
    production_model_id: str | None,
    metric: str,
    margin: float,
    *,
    baseline: dict[str, Any] | None,
    min_gain_over_baseline: float,
) -> Decision:
    """Promote the pick's winner only if, on the same snapshot, it beats the untrained baseline by
    ``min_gain_over_baseline`` and production by ``margin``.

    :param ranking: rows of ``sql/pick_best_model.sql`` (``rank``, ``model_id``, ``result_id``,
        ``test_snapshot``, ``metric_value``), any order.
    :param production_model_id: the model the registry names production now, or None.
    :param metric: the selection metric the ranking was made by (MRI_SELECTION_METRIC, checked by the settings).
    :param margin: how much better than production the winner must be (more than this).
    :param baseline: the newest result of a baseline model on the ranking's snapshot
        (``include.training.records.latest_result(db, "baseline", snapshot)``: ``model_id`` and one
        key per metric), or None when the baseline has none there: then nothing is promoted.
    :param min_gain_over_baseline: how much better than the baseline the winner must be (at least
        this), by ``metric`` (MRI_MIN_GAIN_OVER_BASELINE).
    """
    rows = sorted(ranking, key=lambda row: int(row["rank"]))
    baseline_value = None if baseline is None or baseline.get(metric) is None else float(baseline[metric])
    common = {
        "metric": metric,
        "margin": float(margin),
        "previous_model_id": production_model_id,
        "baseline_model_id": None if baseline is None else baseline["model_id"],
        "baseline_value": baseline_value,
        "min_gain_over_baseline": float(min_gain_over_baseline),
        "ranking": tuple(str(row["model_id"]) for row in rows),
    }
    if not rows:
        return Decision(
            False,
            f"No fine-tuned model has a {metric} on the latest gated test snapshot; nothing to promote. "
            "test_fine_tuned_model evaluates new models there.",
            **common,
        )
    best = rows[0]
    winner = {
        "test_snapshot": best["test_snapshot"],
        "model_id": best["model_id"],
        "result_id": best["result_id"],
        "value": float(best["metric_value"]),
    }
    snapshot = best["test_snapshot"][:12]
    if best["model_id"] == production_model_id:
        reason = f"{best['model_id']} is in production and still the best by {metric} on snapshot {snapshot}."
        return Decision(False, reason, **common, **winner, previous_value=winner["value"])
    if baseline_value is None:
        reason = (
            f"The baseline has no {metric} on snapshot {snapshot}, so {best['model_id']} ({metric} "
            f"{winner['value']:.4f}) cannot be shown to beat it by {min_gain_over_baseline}: nothing is promoted "
            "blind. test_baseline_model evaluates the untrained baseline on each gated test snapshot; "
            "deploy_best_model decides again after it."
        )
        return Decision(False, reason, **common, **winner)
    over_baseline = winner["value"] - baseline_value
    if over_baseline - min_gain_over_baseline < -EPSILON:
        reason = (
            f"{best['model_id']} does not beat the baseline {common['baseline_model_id']} by {min_gain_over_baseline}: "
            f"{metric} {winner['value']:.4f} vs {baseline_value:.4f} ({over_baseline:+.4f}) on snapshot {snapshot}. "
            "A model must beat the untrained baseline by MRI_MIN_GAIN_OVER_BASELINE to be promoted."
        )
        return Decision(False, reason, **common, **winner)
    if production_model_id is None:
        reason = (
            f"First production model: {best['model_id']} ({metric} {winner['value']:.4f} on snapshot {snapshot}, "
            f"baseline {baseline_value:.4f})."
        )
        return Decision(True, reason, **common, **winner)
    current = next((row for row in rows if row["model_id"] == production_model_id), None)
    if current is None:
        reason = (
            f"Production model {production_model_id} has no {metric} on snapshot {snapshot}, so {best['model_id']} "
            "cannot be compared with it on the same data: evaluate the production model on that snapshot "
            "(test_fine_tuned_model) and deploy_best_model decides again."
        )
        return Decision(False, reason, **common, **winner)
    previous_value = float(current["metric_value"])
    gain = winner["value"] - previous_value
    if gain - margin > EPSILON:
        reason = (
            f"{best['model_id']} beats production {production_model_id} by {gain:+.4f} {metric} "
            f"({winner['value']:.4f} vs {previous_value:.4f}, margin {margin}) on snapshot {snapshot}."
        )
        return Decision(True, reason, **common, **winner, previous_value=previous_value)
    reason = (
        f"{best['model_id']} does not beat production {production_model_id} by more than the margin {margin}: "
        f"{metric} {winner['value']:.4f} vs {previous_value:.4f} ({gain:+.4f}) on snapshot {snapshot}."
    )
    return Decision(False, reason, **common, **winner, previous_value=previous_value)
