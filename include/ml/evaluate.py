"""Evaluate a saved model on a set of images: metrics on probabilities with 95% bootstrap intervals,
a ROC curve and a confusion matrix picture, and every image's probabilities (``predictions.json``,
what the deploy compares two models on, image by image). Predictions go through
``predict.predict_proba``, exactly as serving does."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from include.files import atomic_write
from include.ml import INTERVAL_METRICS
from include.ml.bootstrap import Interval, metric_interval, paired_gain
from include.ml.bundle import label_names, load_model
from include.ml.data import LabelMismatch, label_mismatch, read_images
from include.ml.metrics import classification_metrics, plot_confusion, plot_roc
from include.ml.predict import predict_proba

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.json"
# Resamples of an interval when the caller names none (MRI_BOOTSTRAP_RESAMPLES in the pipeline).
DEFAULT_RESAMPLES = 2000


class Predictions(NamedTuple):
    """One evaluation's per-image outputs: ``probabilities[i]`` of image ``keys[i]`` (its SHA-256), whose
    true label is ``targets[i]``; columns in the order of ``labels``."""

    labels: list[str]
    keys: list[str]
    targets: list[str]
    probabilities: np.ndarray

    def aligned(self, labels: Sequence[str], keys: Sequence[str]) -> np.ndarray:
        """The probabilities with columns in the order of ``labels`` and rows in the order of ``keys``."""
        rows = {key: i for i, key in enumerate(self.keys)}
        missing = [key for key in keys if key not in rows]
        if missing or set(labels) != set(self.labels):
            raise ValueError(
                f"These predictions cannot be paired: {len(missing)} of the images are not in them, or their "
                f"labels ({', '.join(self.labels)}) are not {', '.join(labels)}."
            )
        columns = [self.labels.index(label) for label in labels]
        return self.probabilities[[rows[key] for key in keys]][:, columns]


def read_predictions(path: Path | str) -> Predictions:
    """What :func:`evaluate` wrote to ``predictions.json``."""
    data = json.loads(Path(path).read_text())
    return Predictions(data["labels"], data["keys"], data["targets"], np.asarray(data["probabilities"], dtype=float))


def evaluate(
    model: Any,
    processor: Any,
    images: list,
    targets: Sequence[int],
    out_dir: Path,
    title: str,
    batch_size: int = 32,
    keys: Sequence[str] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
) -> dict:
    """Metrics of ``model`` on ``images``, their intervals, and the paths of ``roc.png``,
    ``confusion.png`` and ``predictions.json`` in ``out_dir``.

    :param model: a ``*ForImageClassification`` model.
    :param processor: its image processor.
    :param images: RGB images.
    :param targets: the true class index of each image.
    :param out_dir: the folder for the pictures and the predictions.
    :param title: the pictures' title (the model id).
    :param batch_size: images per forward pass.
    :param keys: each image's SHA-256, so two evaluations can be paired image by image; default its position.
    :param resamples: bootstrap resamples of each interval.
    """
    probabilities = predict_proba(model, processor, images, batch_size=batch_size)
    labels = label_names(model.config.id2label)
    return evaluate_probabilities(labels, probabilities, targets, out_dir, title, keys, resamples)


def evaluate_probabilities(
    labels: Sequence[str],
    probabilities: np.ndarray,
    targets: Sequence[int],
    out_dir: Path,
    title: str,
    keys: Sequence[str] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
) -> dict:
    """What :func:`evaluate` returns, from any model's probabilities (``probabilities[i, j]``: image i,
    label ``labels[j]``): the learned baseline is evaluated the same way as a network."""
    metrics = classification_metrics(targets, probabilities)
    intervals = {name: metric_interval(targets, probabilities, name, resamples) for name in INTERVAL_METRICS}
    predictions = Path(out_dir) / PREDICTIONS_FILE
    predictions.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "labels": list(labels),
        "keys": list(keys) if keys is not None else [str(i) for i in range(len(targets))],
        "targets": [labels[t] for t in targets],
        "probabilities": np.asarray(probabilities, dtype=float).round(6).tolist(),
    }
    atomic_write(predictions, json.dumps(record))
    missing = [label for label, row in zip(labels, metrics["per_class"], strict=True) if not row["images"]]
    if missing:
        # Said, not hidden: the ROC AUC (if any) is over the other classes only.
        log.warning("%s: no image of %s; ROC AUC of the others: %s", title, ", ".join(missing), metrics["roc_auc"])
    auc = f"ROC AUC {metrics['roc_auc']:.3f}" if metrics["roc_auc"] is not None else "ROC AUC n/a"
    if missing:
        auc += f" (no {', '.join(missing)})"
    roc = plot_roc(targets, probabilities, labels, Path(out_dir) / "roc.png", f"{title}\n{auc}, n={len(targets)}")
    confusion = plot_confusion(
        metrics["confusion_matrix"],
        labels,
        Path(out_dir) / "confusion.png",
        f"{title}\naccuracy {metrics['accuracy']:.3f}",
    )
    return {
        **metrics,
        "intervals": {name: asdict(value) if value else None for name, value in intervals.items()},
        "images": len(targets),
        "roc_png": str(roc),
        "confusion_png": str(confusion),
        "predictions": str(predictions),
    }


def evaluate_bundle(
    directory: Path,
    items: Sequence[tuple[str, ...]],
    read: Callable[[str], bytes],
    out_dir: Path,
    title: str,
    labels: Sequence[str] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
) -> dict:
    """What an evaluation task calls: load the bundle, read ``(uri, label, sha256)`` items, evaluate.

    :param directory: the model's bundle (``save_model`` layout).
    :param items: the gated test snapshot's ``(uri, label, sha256)`` members, each file checked
        against its SHA-256 as it is read (``(uri, label)``: unchecked).
    :param read: returns a URI's bytes through the storage layer.
    :param out_dir: the folder for the pictures.
    :param title: the pictures' title.
    :param labels: MRI_LABELS: a model trained on other labels is refused (``LabelMismatch``, naming
        both) before any image is read.
    :param resamples: bootstrap resamples of each interval.
    """
    loaded = load_model(directory)
    model_labels = label_names(loaded.model.config.id2label)
    reason = label_mismatch(model_labels, labels) if labels is not None else None
    if reason:
        raise LabelMismatch(f"Model {directory} cannot be evaluated: {reason}.")
    data = read_images(items, read, model_labels, labels)
    keys = [item[2] if len(item) > 2 else item[0] for item in items]
    return evaluate(
        loaded.model, loaded.processor, data.images, data.targets, out_dir, title, keys=keys, resamples=resamples
    )


def paired_gain_of(
    candidate: object, reference: object, labels: Sequence[str], metric: str, resamples: int, folder: str
) -> Interval | None:
    """The gain in ``metric`` of one evaluation over another on the same images, with its paired
    95% interval, from their ``predictions.json`` files (``model_results.predictions``).

    None, with the reason logged, when they cannot be paired: a result from before per-image
    predictions were kept, a file outside ``folder`` (MRI_EVALUATIONS_DIR: the registry's paths are
    data) or unreadable, other images or other labels than ``labels`` (MRI_LABELS, matched by name).
    """
    try:
        paths = []
        for path in (candidate, reference):
            if not isinstance(path, str) or not path:  # None, or a DataFrame's NaN
                raise ValueError("a result has no per-image predictions (evaluated before migration 0009)")
            resolved, root = Path(path).resolve(), Path(folder).resolve()
            if root not in resolved.parents:
                raise ValueError(f"{path!r} is not inside MRI_EVALUATIONS_DIR ({root})")
            paths.append(resolved)
        first, second = (read_predictions(path) for path in paths)
        targets = [list(labels).index(label) for label in first.targets]
        ours, theirs = first.aligned(labels, first.keys), second.aligned(labels, first.keys)
        if len(second.keys) != len(first.keys):
            raise ValueError("the two evaluations hold different images")
    except (OSError, ValueError, KeyError) as err:
        log.warning("Cannot pair the evaluations %s and %s: %s", candidate, reference, err)
        return None
    return paired_gain(targets, ours, theirs, metric, resamples)
