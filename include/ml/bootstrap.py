"""How sure a test score is: 95% bootstrap intervals of one model's metric, and of the gain of one
model over another on the same images (paired: both are scored on each resample).

Resamples are drawn within each class (a resample keeps the class counts of the test set), seeded,
so the same predictions always give the same interval. Percentile intervals. The metrics are
computed for all resamples at once (ranks for ROC AUC, confusion counts for the rest), as
``metrics.classification_metrics`` defines them: 2,000 paired resamples of 166 images take
milliseconds, where scikit-learn called per resample takes seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from include.ml.metrics import checked_probabilities

# The interval's coverage: 2.5% and 97.5% percentiles.
LOWER, UPPER = 2.5, 97.5


@dataclass(frozen=True)
class Interval:
    """A point estimate and its 95% interval, from ``resamples`` resamples."""

    value: float
    low: float
    high: float
    resamples: int


def stratified_resamples(targets: Sequence[int], resamples: int, seed: int = 0) -> np.ndarray:
    """(resamples, n) indices: each row draws, with replacement, as many images of each class as there are."""
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    rows = np.empty((resamples, len(targets)), dtype=np.int64)
    for cls in np.unique(targets):
        members = np.flatnonzero(targets == cls)
        rows[:, members] = members[rng.integers(0, len(members), size=(resamples, len(members)))]
    return rows


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each row (Mann-Whitney: ties count half); NaN for a row with one class only."""
    positives = positive.sum(axis=1)
    negatives = positive.shape[1] - positives
    ranks = rankdata(scores, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * positive).sum(axis=1) - positives * (positives + 1) / 2) / (positives * negatives)


def metric_values(metric: str, targets: np.ndarray, probabilities: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``metric`` on each resample (a row of ``rows``, indices into the images); NaN where undefined.

    :param metric: one of SELECTION_METRICS, defined as ``metrics.classification_metrics`` does.
    """
    num_labels = probabilities.shape[1]
    y = targets[rows]
    if metric == "roc_auc":
        if num_labels == 2:
            return _binary_auc(y == 1, probabilities[rows, 1])
        per_class = np.stack([_binary_auc(y == k, probabilities[rows, k]) for k in range(num_labels)])
        # Over the classes present, as metrics.roc_auc (resamples keep each class's count); NaN with fewer than two.
        present = np.isfinite(per_class).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(present >= 2, np.nansum(per_class, axis=0) / present, np.nan)
    predicted = probabilities.argmax(axis=1)[rows]
    if metric == "accuracy":
        return (predicted == y).mean(axis=1)
    # Confusion counts of every resample at once: (resamples, true, predicted).
    codes = (y * num_labels + predicted + np.arange(len(rows))[:, None] * num_labels**2).ravel()
    counts = np.bincount(codes, minlength=len(rows) * num_labels**2).reshape(len(rows), num_labels, num_labels)
    hits = np.diagonal(counts, axis1=1, axis2=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(hits / counts.sum(axis=1))  # zero_division=0, as scikit-learn is told
        recall = np.nan_to_num(hits / counts.sum(axis=2))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    chosen = {"precision": precision, "recall": recall, "f1": f1}[metric]
    return chosen[:, 1] if num_labels == 2 else chosen.mean(axis=1)


def _interval(values: np.ndarray) -> Interval | None:
    """The first value (the images as they are) and the percentile interval of the rest."""
    point, draws = values[0], values[1:]
    draws = draws[np.isfinite(draws)]
    if not np.isfinite(point) or not len(draws):
        return None
    low, high = np.percentile(draws, [LOWER, UPPER])
    return Interval(float(point), float(low), float(high), len(draws))


def _with_identity(targets: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The images as they are (row 0), then the resamples."""
    return np.vstack([np.arange(len(targets)), stratified_resamples(targets, resamples, seed)])


def metric_interval(
    targets: Sequence[int], probabilities: np.ndarray, metric: str, resamples: int, seed: int = 0
) -> Interval | None:
    """``metric`` of one model's ``probabilities`` with its 95% interval; None where it is undefined."""
    targets, probabilities = np.asarray(targets, dtype=int), checked_probabilities(probabilities)
    if not len(targets):
        return None
    return _interval(metric_values(metric, targets, probabilities, _with_identity(targets, resamples, seed)))


def paired_gain(
    targets: Sequence[int],
    candidate: np.ndarray,
    reference: np.ndarray,
    metric: str,
    resamples: int,
    seed: int = 0,
) -> Interval | None:
    """``metric(candidate) - metric(reference)`` on the same images, with its paired 95% interval.

    :param candidate: (n, num_labels) probabilities of the model that would replace ``reference``.
    :param reference: the other model's probabilities for the same images, in the same order.
    :returns: None where the metric is undefined (e.g. ROC AUC with one class).
    """
    targets = np.asarray(targets, dtype=int)
    candidate, reference = checked_probabilities(candidate), checked_probabilities(reference)
    if not len(targets):
        return None
    rows = _with_identity(targets, resamples, seed)
    return _interval(metric_values(metric, targets, candidate, rows) - metric_values(metric, targets, reference, rows))
