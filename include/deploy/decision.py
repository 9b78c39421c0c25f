"""The promotion decision: does the sweep's choice replace production? Pure, no I/O.

Select on validation, confirm on test. The pick (``sql/pick_best_model.sql``) ranks the newest
sweep by each model's validation metric; only its winner is looked at on the latest gated test
snapshot, beside production's result there. It is promoted only if, on that snapshot, it beats the
learned baseline (``include.ml.learned_baseline``: a logistic regression on 32 px grey levels) by at
least ``MRI_MIN_GAIN_OVER_BASELINE`` and its paired-bootstrap gain over production has a 95% interval
whose lower end is above ``MRI_PROMOTION_MARGIN`` (default 0: a gain larger than chance). Without a
learned-baseline result on that snapshot nothing is promoted: a model never shown to beat a simple
one is not served. Every "no" carries its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    # The learned baseline's result on the same snapshot, and the gain over it required.
    baseline_model_id: str | None = None
    baseline_value: float | None = None
    min_gain_over_baseline: float | None = None
    # The pick's model ids, best first (for the log and the UI; not stored).
    ranking: tuple[str, ...] = ()
    # The winner's validation metric (what chose it) and its paired gain over production on the
    # test snapshot: the point estimate, the 95% interval and the resamples it came from.
    validation_value: float | None = None
    gain: float | None = None
    gain_low: float | None = None
    gain_high: float | None = None
    gain_resamples: int | None = None

    def as_dict(self) -> dict[str, Any]:
        # A list, as JSON has it: XCom hands it back the same on both majors (serde keeps tuples).
        return {**asdict(self), "ranking": list(self.ranking)}


def _present(value: Any) -> bool:
    """Not None and not NaN (a DataFrame's missing value, which is not equal to itself)."""
    return value is not None and value == value


def _ranked(row: dict[str, Any]) -> bool:
    """A row of the newest sweep (production's own row, from an older sweep, has no rank)."""
    return _present(row.get("rank"))


def decide(
    ranking: Sequence[dict[str, Any]],
    production_model_id: str | None,
    metric: str,
    margin: float,
    *,
    baseline: dict[str, Any] | None,
    min_gain_over_baseline: float,
    compare: Callable[[dict[str, Any], dict[str, Any]], Any],
) -> Decision:
    """Promote the sweep's choice only if, on the same snapshot, it beats the learned baseline by
    ``min_gain_over_baseline`` and production by a gain whose 95% interval starts above ``margin``.

    :param ranking: rows of ``sql/pick_best_model.sql`` (``rank``: by validation, within the newest
        sweep, else missing; ``model_id``, ``result_id``, ``test_snapshot``, ``metric_value`` on test,
        ``validation_value``), any order.
    :param production_model_id: the model the registry names production now, or None.
    :param metric: the selection metric the ranking was made by (MRI_SELECTION_METRIC, checked by the settings).
    :param margin: what the lower end of the gain's 95% interval must exceed (MRI_PROMOTION_MARGIN).
    :param baseline: the newest result of the learned baseline on the ranking's snapshot
        (``include.training.records.latest_result(db, LEARNED_BASELINE, snapshot)``: ``model_id`` and
        one key per metric), or None when it has none there: then nothing is promoted.
    :param min_gain_over_baseline: how much better than the baseline the winner must be (at least
        this), by ``metric`` (MRI_MIN_GAIN_OVER_BASELINE).
    :param compare: ``compare(winner_row, production_row)``: the paired-bootstrap gain of the winner
        over production on the snapshot's images (``include.ml.bootstrap.Interval``: ``value``, ``low``,
        ``high``, ``resamples``), or None when the two cannot be paired.
    """
    rows = sorted((row for row in ranking if _ranked(row)), key=lambda row: int(row["rank"]))
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
            f"No fine-tuned model of the newest sweep has a {metric} on the latest gated test snapshot; nothing "
            "to promote. test_fine_tuned_model evaluates new models there.",
            **common,
        )
    best = rows[0]
    if not _present(best.get("metric_value")):
        return Decision(
            False,
            f"{best['model_id']}, the newest sweep's best by validation {metric}, has no {metric} on the latest "
            "gated test snapshot yet: nothing is promoted until test_fine_tuned_model evaluates it (a model the "
            "test cannot confirm is not served, and its sweep's runners-up were not chosen).",
            **common,
            model_id=best["model_id"],
        )
    validation = best.get("validation_value")
    winner = {
        "test_snapshot": best["test_snapshot"],
        "model_id": best["model_id"],
        "result_id": best["result_id"],
        "value": float(best["metric_value"]),
        "validation_value": float(validation) if _present(validation) else None,
    }
    snapshot = best["test_snapshot"][:12]
    chosen = f"{best['model_id']} (chosen on validation {metric} {_number(winner['validation_value'])})"
    if best["model_id"] == production_model_id:
        reason = f"{chosen} is in production already: its sweep has no better model by validation {metric}."
        return Decision(False, reason, **common, **winner, previous_value=winner["value"])
    if baseline_value is None:
        reason = (
            f"The learned baseline has no {metric} on snapshot {snapshot}, so {chosen} (test {metric} "
            f"{winner['value']:.4f}) cannot be shown to beat it by {min_gain_over_baseline}: nothing is promoted "
            "blind. test_baseline_model fits it on the newest gated train snapshot and evaluates it on each "
            "gated test snapshot (after each gate and each sweep, or triggered by hand); deploy_best_model "
            "decides again after it."
        )
        return Decision(False, reason, **common, **winner)
    over_baseline = winner["value"] - baseline_value
    if over_baseline - min_gain_over_baseline < -EPSILON:
        reason = (
            f"{chosen} does not beat the learned baseline {common['baseline_model_id']} by {min_gain_over_baseline}: "
            f"test {metric} {winner['value']:.4f} vs {baseline_value:.4f} ({over_baseline:+.4f}) on snapshot "
            f"{snapshot}. A model must beat the learned baseline by MRI_MIN_GAIN_OVER_BASELINE to be promoted."
        )
        return Decision(False, reason, **common, **winner)
    if production_model_id is None:
        reason = (
            f"First production model: {chosen}, test {metric} {winner['value']:.4f} on snapshot {snapshot} "
            f"(learned baseline {baseline_value:.4f})."
        )
        return Decision(True, reason, **common, **winner)
    current = next((row for row in ranking if row["model_id"] == production_model_id), None)
    if current is None:
        reason = (
            f"Production model {production_model_id} has no {metric} on snapshot {snapshot}, so {chosen} "
            "cannot be compared with it on the same data: evaluate the production model on that snapshot "
            "(test_fine_tuned_model) and deploy_best_model decides again."
        )
        return Decision(False, reason, **common, **winner)
    previous_value = float(current["metric_value"])
    gain = compare(best, current)
    if gain is None:
        reason = (
            f"{chosen} and production {production_model_id} cannot be compared image by image on snapshot "
            f"{snapshot} (a result without per-image predictions, or {metric} undefined on it): "
            "test_fine_tuned_model evaluates them again, then deploy_best_model decides again."
        )
        return Decision(False, reason, **common, **winner, previous_value=previous_value)
    measured = {
        "gain": gain.value,
        "gain_low": gain.low,
        "gain_high": gain.high,
        "gain_resamples": gain.resamples,
        "previous_value": previous_value,
    }
    words = (
        f"test {metric} {winner['value']:.4f} vs {previous_value:.4f}: gain {gain.value:+.4f}, 95% interval "
        f"[{gain.low:+.4f}, {gain.high:+.4f}] ({gain.resamples} paired resamples) on snapshot {snapshot}"
    )
    if gain.low - margin > EPSILON:
        reason = f"{chosen} beats production {production_model_id}: {words}, above the margin {margin}."
        return Decision(True, reason, **common, **winner, **measured)
    reason = (
        f"{chosen} does not beat production {production_model_id} by more than chance: {words}; the interval's "
        f"lower end must be above MRI_PROMOTION_MARGIN={margin}."
    )
    return Decision(False, reason, **common, **winner, **measured)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
