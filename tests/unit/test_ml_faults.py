"""Faults the ML core refuses instead of measuring: NaN probabilities (an error, not a ROC AUC), a NaN
validation loss (divergence, like a NaN training loss), a file whose bytes are not the ones its
snapshot recorded, and a model trained on other labels than MRI_LABELS."""

import hashlib
import io

import numpy as np
import pytest
import torch
from PIL import Image

from include.ml.bundle import save_model
from include.ml.data import ContentChanged, LabelMismatch, read_images
from include.ml.evaluate import evaluate_bundle
from include.ml.hyperparameters import TrainConfig
from include.ml.metrics import classification_metrics, roc_auc
from include.ml.source import build_processor
from include.ml.train import TrainingDiverged, fine_tune
from tests.support.tiny_models import tiny_resnet
from tests.unit.test_ml_core import toy_images

TARGETS = np.array([0, 0, 1, 1, 0, 1, 1, 0, 1, 0])
P1 = np.array([0.1, 0.4, 0.45, 0.8, 0.4, 0.9, 0.6, 0.2, 0.55, 0.7])


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def with_nan_rows(probabilities: np.ndarray, rows: list[int]) -> np.ndarray:
    probabilities = probabilities.copy()
    probabilities[rows] = np.nan
    return probabilities


def test_nan_probabilities_are_an_error_naming_how_many_rows_not_a_roc_auc():
    binary = with_nan_rows(np.column_stack([1 - P1, P1]), [1, 3])
    with pytest.raises(ValueError, match=r"2 of 10 rows of probabilities contain NaN"):
        classification_metrics(TARGETS, binary)
    with pytest.raises(ValueError, match=r"2 of 10 rows of probabilities contain NaN"):
        roc_auc(TARGETS, binary)
    # Every row NaN: argmax would call each image class 0 and the AUC would be read from ties.
    with pytest.raises(ValueError, match=r"10 of 10 rows of probabilities contain NaN"):
        classification_metrics(TARGETS, np.full((10, 2), np.nan))
    # One class only (no ROC AUC to fail on): accuracy and F1 of NaN rows are not numbers either.
    with pytest.raises(ValueError, match=r"1 of 3 rows of probabilities contain NaN"):
        classification_metrics([1, 1, 1], np.array([[0.2, 0.8], [np.nan, np.nan], [0.3, 0.7]]))
    three = with_nan_rows(np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.3, 0.5, 0.2]]), [0])
    with pytest.raises(ValueError, match=r"1 of 4 rows of probabilities contain NaN"):
        classification_metrics([0, 1, 2, 0], three)


def bn_with_corrupt_running_variance(model) -> None:
    """Negative running variances: training (batch statistics) is finite, inference (running
    statistics) gives NaN, as a model whose batch-norm statistics blew up does."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        norms[-1].running_var.fill_(-1e6)


def test_a_nan_validation_loss_is_divergence_not_a_score():
    images, targets = toy_images(16, seed=0)
    model = tiny_resnet()
    bn_with_corrupt_running_variance(model)
    config = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-3, image_size=32, validation_fraction=0.25)
    with pytest.raises(TrainingDiverged, match=r"Validation loss is nan at epoch 1 .*training diverged"):
        fine_tune(model, build_processor(32), images, targets, config)


def png_bytes(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (32, 32)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_reading_an_item_checks_its_sha256_and_names_the_file_and_both_hashes():
    files = {"raw/a.png": png_bytes(0), "raw/b.png": png_bytes(1)}
    recorded = {uri: hashlib.sha256(data).hexdigest() for uri, data in files.items()}
    items = [(uri, "glioma", recorded[uri]) for uri in files]
    assert len(read_images(items, files.__getitem__, ("glioma", "meningioma")).images) == 2

    files["raw/b.png"] = png_bytes(2)  # swapped after the gate passed
    with pytest.raises(ContentChanged) as raised:
        read_images(items, files.__getitem__, ("glioma", "meningioma"))
    message = str(raised.value)
    assert "raw/b.png" in message and recorded["raw/b.png"] in message
    assert hashlib.sha256(files["raw/b.png"]).hexdigest() in message
    assert "restore the file or re-run the gate" in message


def test_a_model_trained_on_other_labels_names_them_and_mri_labels(tmp_path):
    save_model(tiny_resnet(num_labels=2), build_processor(32), tmp_path / "m", {})
    files = {"raw/p.png": png_bytes(0)}
    items = [("raw/p.png", "pituitary", hashlib.sha256(files["raw/p.png"]).hexdigest())]
    with pytest.raises(LabelMismatch) as raised:
        evaluate_bundle(
            tmp_path / "m", items, files.__getitem__, tmp_path / "e", "m", ("glioma", "meningioma", "pituitary")
        )
    message = str(raised.value)
    assert "(glioma, meningioma)" in message and "MRI_LABELS (glioma, meningioma, pituitary)" in message
