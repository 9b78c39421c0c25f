"""Bootstrap intervals: the vectorized metrics are the ones evaluation reports, the intervals are
seeded, and a paired gain tells a real improvement from one image's worth of luck."""

import numpy as np
import pytest

from include.ml import SELECTION_METRICS
from include.ml.bootstrap import metric_interval, metric_values, paired_gain, stratified_resamples
from include.ml.metrics import classification_metrics


@pytest.mark.parametrize("num_labels", [2, 3])
@pytest.mark.parametrize("metric", SELECTION_METRICS)
def test_every_resample_scores_what_classification_metrics_reports(num_labels, metric):
    rng = np.random.default_rng(num_labels)
    targets = rng.integers(0, num_labels, 60)
    probabilities = rng.dirichlet(np.ones(num_labels), 60)
    rows = stratified_resamples(targets, 40, seed=3)

    fast = metric_values(metric, targets, probabilities, rows)

    reported = [classification_metrics(targets[r], probabilities[r])[metric] for r in rows]
    assert np.allclose(fast, [np.nan if v is None else v for v in reported], equal_nan=True)


def test_resamples_keep_each_class_count_and_the_same_seed_gives_the_same_interval():
    targets = np.repeat([0, 1, 2], [5, 30, 12])
    rows = stratified_resamples(targets, 100, seed=7)
    assert all(np.bincount(targets[r], minlength=3).tolist() == [5, 30, 12] for r in rows)

    probabilities = np.random.default_rng(0).dirichlet(np.ones(3), len(targets))
    first = metric_interval(targets, probabilities, "roc_auc", 500)
    assert first == metric_interval(targets, probabilities, "roc_auc", 500)
    assert first.low <= first.value <= first.high and first.resamples == 500


def test_roc_auc_has_no_interval_with_one_class():
    assert metric_interval([1, 1, 1], np.array([[0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]), "roc_auc", 100) is None


def separated(targets: np.ndarray, separation: float, noise: np.ndarray) -> np.ndarray:
    positive = 1 / (1 + np.exp(-(noise + separation * targets)))
    return np.stack([1 - positive, positive], axis=1)


def test_a_paired_gain_separates_a_better_model_from_luck():
    """83 test images per class, as the demo's test split had before subjects (85 now); the same
    per-image noise for both models."""
    targets = np.repeat([0, 1], 83)
    noise = np.random.default_rng(0).normal(size=len(targets))
    production = separated(targets, 1.5, noise)
    better = separated(targets, 2.5, noise)
    # The lowest positive moved just past the one negative above it: one more pair in 6,889 in order.
    lucky = production.copy()
    lowest = np.argmin(np.where(targets == 1, production[:, 1], np.inf))
    passed = np.min(np.where((targets == 0) & (production[:, 1] > production[lowest, 1]), production[:, 1], np.inf))
    lucky[lowest] = [1 - passed - 1e-9, passed + 1e-9]

    real, luck, same = (paired_gain(targets, m, production, "roc_auc", 2000) for m in (better, lucky, production))

    assert real.low > 0 and real.low <= real.value <= real.high
    assert luck.value > 0 >= luck.low
    assert (same.value, same.low, same.high) == (0, 0, 0)
