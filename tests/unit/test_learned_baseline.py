"""The learned baseline: it learns what grey levels tell apart, saves as JSON and loads to the same
probabilities, and refuses a train set missing a label."""

import json

import numpy as np
import pytest
from PIL import Image

from include.ml import learned_baseline

LABELS = ("glioma", "meningioma")


def slices(brightness: float, count: int, seed: int) -> list[Image.Image]:
    """Noisy grey squares with a disc of ``brightness`` (0..1): the classes differ in the disc."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:64, 0:64]
    disc = (x - 32) ** 2 + (y - 32) ** 2 < 12**2
    images = []
    for _ in range(count):
        pixels = rng.normal(0.3, 0.08, (64, 64))
        pixels[disc] = brightness + rng.normal(0, 0.08, disc.sum())
        images.append(Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).convert("RGB"))
    return images


def test_it_learns_grey_levels_and_loads_from_json_to_the_same_probabilities(tmp_path):
    train = slices(0.6, 20, seed=0) + slices(0.4, 20, seed=1)
    test = slices(0.6, 10, seed=2) + slices(0.4, 10, seed=3)
    model = learned_baseline.fit(train, [0] * 20 + [1] * 20, LABELS)

    probabilities = model.predict_proba(test)
    model.save(tmp_path / "model")
    loaded = learned_baseline.load(tmp_path / "model")

    assert probabilities.shape == (20, 2) and np.allclose(probabilities.sum(axis=1), 1)
    assert (probabilities[:10, 0] > 0.5).all() and (probabilities[10:, 1] > 0.5).all()
    assert np.array_equal(loaded.predict_proba(test), probabilities)
    assert loaded.labels == LABELS and loaded.hyperparameters == model.hyperparameters
    # Data only: one JSON file, nothing a load would execute.
    assert [p.name for p in (tmp_path / "model").iterdir()] == [learned_baseline.MODEL_FILE]
    assert set(json.loads((tmp_path / "model" / learned_baseline.MODEL_FILE).read_text())) == {
        "labels",
        "side",
        "hyperparameters",
        "mean",
        "scale",
        "coef",
        "intercept",
    }


def test_a_train_set_without_a_label_is_refused_naming_it():
    with pytest.raises(ValueError, match="needs images of every label; none of meningioma"):
        learned_baseline.fit(slices(0.6, 4, seed=0), [0] * 4, LABELS)
