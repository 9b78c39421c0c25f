"""Classification metrics from class probabilities, and their pictures; scikit-learn does the math.

ROC AUC is computed on probabilities, never on hard 0/1 predictions: one-vs-rest, macro-averaged,
for N classes. A class with no image has no ROC curve: the macro average is over the classes that
have one (``per_class`` says which: its ``roc_auc`` is None), and None only when fewer than two
classes are present. Precision, recall and F1 are of the
positive class (index 1) for two classes, macro-averaged for more; ``per_class`` gives each class's
own and ``balanced_accuracy`` the mean recall, which no label order changes. The loss is the mean
cross-entropy, ``brier`` the mean squared error of the probabilities (calibration: 0 is perfect).
Probabilities with NaN are an error (a diverged or damaged model), never a score.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn import metrics as sk
from sklearn.exceptions import UndefinedMetricWarning

# Probabilities are clipped before the log: one confident mistake must not make the loss infinite.
# (sklearn's log_loss clips at the float's eps instead, 36 rather than 27.6 per certain mistake.)
EPSILON = 1e-12


def checked_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """``probabilities`` as float64 (n, num_labels); ValueError naming how many rows hold NaN (or an infinity).

    A NaN row would otherwise be argmax class 0 and a tie in every ranking: accuracy and ROC AUC of
    outputs that are not numbers.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    bad = int((~np.isfinite(probabilities)).any(axis=1).sum()) if probabilities.size else 0
    if bad:
        raise ValueError(
            f"{bad} of {len(probabilities)} rows of probabilities contain NaN (or an infinity): the model's "
            "outputs are not numbers (diverged or damaged weights); no metric is computed from them."
        )
    return probabilities


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for the boolean ``positive``; None with one class only."""
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return None
    return float(sk.roc_auc_score(positive, scores))


def class_aucs(targets: Sequence[int], probabilities: np.ndarray) -> list[float | None]:
    """Each class's one-vs-rest ROC AUC on its probability column; None for a class with no image
    (or with every image)."""
    targets, probabilities = np.asarray(targets), checked_probabilities(probabilities)
    return [binary_auc(targets == k, probabilities[:, k]) for k in range(probabilities.shape[1])]


def roc_auc(targets: Sequence[int], probabilities: np.ndarray) -> float | None:
    """ROC AUC on probabilities: P(class 1) for two classes; for more, the mean of the one-vs-rest
    AUCs of the classes present (scikit-learn's macro one-vs-rest when every class is).

    :raises ValueError: when a row of ``probabilities`` holds NaN.
    """
    aucs = class_aucs(targets, probabilities)
    if len(aucs) == 2:
        return aucs[1]
    defined = [auc for auc in aucs if auc is not None]
    return float(np.mean(defined)) if len(defined) >= 2 else None


def roc_curve(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    with warnings.catch_warnings():
        # With one class only, one of the rates is 0/0: drawn as 0, not NaN.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        fpr, tpr, _ = sk.roc_curve(np.asarray(positive, dtype=bool), scores, drop_intermediate=False)
    return np.nan_to_num(fpr), np.nan_to_num(tpr)


def confusion_matrix(targets: Sequence[int], predictions: Sequence[int], num_labels: int) -> np.ndarray:
    """Counts: rows the true class, columns the predicted one."""
    if not len(targets):
        return np.zeros((num_labels, num_labels), dtype=np.int64)
    return sk.confusion_matrix(targets, predictions, labels=range(num_labels))


def precision_recall_f1(targets: Sequence[int], predictions: Sequence[int], num_labels: int) -> tuple[float, ...]:
    """Precision, recall and F1 of class 1 for two classes, macro-averaged for more; zeros with no image."""
    if not len(targets):
        return 0.0, 0.0, 0.0
    precision, recall, f1, _ = sk.precision_recall_fscore_support(
        targets,
        predictions,
        labels=range(num_labels),
        pos_label=1,
        average="binary" if num_labels == 2 else "macro",
        zero_division=0,
    )
    return float(precision), float(recall), float(f1)


def classification_metrics(targets: Sequence[int], probabilities: np.ndarray) -> dict:
    """loss, accuracy, precision, recall, f1, roc_auc, balanced_accuracy, brier, per_class (one dict of
    precision, recall, f1 and images per class, in label order), confusion_matrix (a list of lists).

    :param targets: the true class index of each image.
    :param probabilities: (n, num_labels) softmax outputs.
    :raises ValueError: when a row of ``probabilities`` holds NaN.
    """
    targets = np.asarray(targets, dtype=int)
    probabilities = checked_probabilities(probabilities)
    num_labels = probabilities.shape[1]
    predictions = probabilities.argmax(axis=1)
    precision, recall, f1 = precision_recall_f1(targets, predictions, num_labels)
    aucs = class_aucs(targets, probabilities)
    per_class = [{"precision": 0.0, "recall": 0.0, "f1": 0.0, "images": 0, "roc_auc": None} for _ in aucs]
    if len(targets):
        columns = sk.precision_recall_fscore_support(
            targets, predictions, labels=range(num_labels), average=None, zero_division=0
        )
        per_class = [
            {"precision": float(p), "recall": float(r), "f1": float(f), "images": int(n), "roc_auc": auc}
            for p, r, f, n, auc in zip(*columns, aucs, strict=True)
        ]
    present = [c["recall"] for c in per_class if c["images"]]
    picked = probabilities[np.arange(len(targets)), targets]
    return {
        "loss": float(-np.log(np.clip(picked, EPSILON, 1.0)).mean()) if len(targets) else None,
        "accuracy": float((predictions == targets).mean()) if len(targets) else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc(targets, probabilities),
        # The mean recall of the classes present (sklearn's balanced_accuracy_score, without its warning).
        "balanced_accuracy": float(np.mean(present)) if present else None,
        "brier": float(((probabilities - np.eye(num_labels)[targets]) ** 2).sum(axis=1).mean())
        if len(targets)
        else None,
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(targets, predictions, num_labels).tolist(),
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
