"""The promotion decision: does the pick's winner replace production? Pure, no I/O.

It compares like with like: the pick (``sql/pick_best_model.sql``) ranks results on the latest
gated test snapshot only, and a model replaces production only if it beats production's result
*on that snapshot* by ``MRI_PROMOTION_MARGIN``. Every "no" carries its reason.
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
    # The pick's model ids, best first (for the log and the UI; not stored).
    ranking: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(ranking: Sequence[dict[str, Any]], production_model_id: str | None, metric: str, margin: float) -> Decision:
    """Promote the pick's winner only if it beats production on the same snapshot by ``margin``.

    :param ranking: rows of ``sql/pick_best_model.sql`` (``rank``, ``model_id``, ``result_id``,
        ``test_snapshot``, ``metric_value``), any order.
    :param production_model_id: the model the registry names production now, or None.
    :param metric: the selection metric the ranking was made by (MRI_SELECTION_METRIC, checked by the settings).
    :param margin: how much better than production the winner must be.
    """
    rows = sorted(ranking, key=lambda row: int(row["rank"]))
    common = {
        "metric": metric,
        "margin": float(margin),
        "previous_model_id": production_model_id,
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
    if production_model_id is None:
        reason = f"First production model: {best['model_id']} ({metric} {winner['value']:.4f} on snapshot {snapshot})."
        return Decision(True, reason, **common, **winner)
    if best["model_id"] == production_model_id:
        reason = f"{best['model_id']} is in production and still the best by {metric} on snapshot {snapshot}."
        return Decision(False, reason, **common, **winner, previous_value=winner["value"])
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
