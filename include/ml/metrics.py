"""Classification metrics from class probabilities, and their pictures.

ROC AUC is computed on probabilities (the rank of every score), never on hard 0/1 predictions:
one-vs-rest, macro-averaged, for N classes. Precision, recall and F1 are of the positive class
(index 1) for two classes, macro-averaged for more. The loss is the real mean cross-entropy.
numpy only, checked against scikit-learn in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Probabilities are clipped before the log: one confident mistake must not make the loss infinite.
EPSILON = 1e-12


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (what the Mann-Whitney U statistic needs)."""
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    start = 0
    while start < len(scores):
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for the boolean ``positive``; None with one class only."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc(targets: Sequence[int], probabilities: np.ndarray) -> float | None:
    """ROC AUC on probabilities: P(class 1) for two classes, one-vs-rest macro for more."""
    targets, probabilities = np.asarray(targets), np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape[1] == 2:
        return binary_auc(targets == 1, probabilities[:, 1])
    per_class = [binary_auc(targets == k, probabilities[:, k]) for k in range(probabilities.shape[1])]
    if any(auc is None for auc in per_class):
        return None
    return float(np.mean(per_class))


def roc_curve(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order]
    last_of_each_threshold = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(positive)[last_of_each_threshold]
    fps = (last_of_each_threshold + 1) - tps
    return np.r_[0, fps / max(fps[-1], 1)], np.r_[0, tps / max(tps[-1], 1)]


def confusion_matrix(targets: Sequence[int], predictions: Sequence[int], num_labels: int) -> np.ndarray:
    """Counts: rows the true class, columns the predicted one."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(targets, dtype=int), np.asarray(predictions, dtype=int)), 1)
    return matrix


def classification_metrics(targets: Sequence[int], probabilities: np.ndarray) -> dict:
    """loss, accuracy, precision, recall, f1, roc_auc, confusion_matrix (a list of lists).

    :param targets: the true class index of each image.
    :param probabilities: (n, num_labels) softmax outputs.
    """
    targets = np.asarray(targets, dtype=int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    num_labels = probabilities.shape[1]
    predictions = probabilities.argmax(axis=1)
    matrix = confusion_matrix(targets, predictions, num_labels)
    true_positives = np.diag(matrix).astype(np.float64)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(true_positives, predicted, out=np.zeros(num_labels), where=predicted > 0)
    recall = np.divide(true_positives, actual, out=np.zeros(num_labels), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(num_labels), where=both > 0)
    # Two classes: the positive class's scores; more: the unweighted mean over classes.
    pick = (lambda values: float(values[1])) if num_labels == 2 else (lambda values: float(values.mean()))
    picked = probabilities[np.arange(len(targets)), targets]
    return {
        "loss": float(-np.log(np.clip(picked, EPSILON, 1.0)).mean()) if len(targets) else None,
        "accuracy": float((predictions == targets).mean()) if len(targets) else 0.0,
        "precision": pick(precision),
        "recall": pick(recall),
        "f1": pick(f1),
        "roc_auc": roc_auc(targets, probabilities),
        "confusion_matrix": matrix.tolist(),
    }


def plot_roc(targets: Sequence[int], probabilities: np.ndarray, labels: Sequence[str], path: Path, title: str) -> Path:
    """One ROC curve per class (one for the positive class when there are two), AUC in the legend."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a worker
    import matplotlib.pyplot as plt

    targets, probabilities = np.asarray(targets), np.asarray(probabilities, dtype=np.float64)
    classes = [1] if len(labels) == 2 else range(len(labels))
    figure, axes = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    for k in classes:
        fpr, tpr = roc_curve(targets == k, probabilities[:, k])
        auc = binary_auc(targets == k, probabilities[:, k])
        axes.plot(fpr, tpr, lw=2, label=f"{labels[k]} (AUC {auc:.3f})" if auc is not None else labels[k])
    axes.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    axes.set_title(title, fontsize=9)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str) -> Path:
    """The confusion matrix as a heat map with the count in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    figure, axes = plt.subplots(figsize=(2.4 + 1.1 * len(labels), 1.8 + 1.1 * len(labels)), dpi=100)
    axes.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=color, fontsize=12)
    axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set(xlabel="predicted", ylabel="true")
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
