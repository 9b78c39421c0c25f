"""Evaluate a saved model on a set of images: metrics on probabilities, a ROC curve and a confusion
matrix picture. Predictions go through ``predict.predict_proba``, exactly as serving does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from include.ml.bundle import label_names, load_model
from include.ml.data import LabelMismatch, label_mismatch, read_images
from include.ml.metrics import classification_metrics, plot_confusion, plot_roc
from include.ml.predict import predict_proba


def evaluate(
    model: Any, processor: Any, images: list, targets: Sequence[int], out_dir: Path, title: str, batch_size: int = 32
) -> dict:
    """Metrics of ``model`` on ``images`` and the paths of its ``roc.png`` and ``confusion.png`` in ``out_dir``.

    :param model: a ``*ForImageClassification`` model.
    :param processor: its image processor.
    :param images: RGB images.
    :param targets: the true class index of each image.
    :param out_dir: the folder for the two pictures.
    :param title: the pictures' title (the model id).
    :param batch_size: images per forward pass.
    """
    labels = label_names(model.config.id2label)
    probabilities = predict_proba(model, processor, images, batch_size=batch_size)
    metrics = classification_metrics(targets, probabilities)
    auc = f"ROC AUC {metrics['roc_auc']:.3f}" if metrics["roc_auc"] is not None else "ROC AUC n/a"
    roc = plot_roc(targets, probabilities, labels, Path(out_dir) / "roc.png", f"{title}\n{auc}, n={len(targets)}")
    confusion = plot_confusion(
        metrics["confusion_matrix"],
        labels,
        Path(out_dir) / "confusion.png",
        f"{title}\naccuracy {metrics['accuracy']:.3f}",
    )
    return {**metrics, "images": len(targets), "roc_png": str(roc), "confusion_png": str(confusion)}


def evaluate_bundle(
    directory: Path,
    items: Sequence[tuple[str, ...]],
    read: Callable[[str], bytes],
    out_dir: Path,
    title: str,
    labels: Sequence[str] | None = None,
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
    """
    loaded = load_model(directory)
    model_labels = label_names(loaded.model.config.id2label)
    reason = label_mismatch(model_labels, labels) if labels is not None else None
    if reason:
        raise LabelMismatch(f"Model {directory} cannot be evaluated: {reason}.")
    data = read_images(items, read, model_labels, labels)
    return evaluate(loaded.model, loaded.processor, data.images, data.targets, out_dir, title)
