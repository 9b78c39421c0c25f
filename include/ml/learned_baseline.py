"""The learned baseline: a logistic regression (scikit-learn) on each image's grey levels shrunk to
32 x 32, fitted on a gated train snapshot.

An untrained network scores ROC AUC 0.5 by construction, so beating it shows only that training did
something. This one learns what brightness and coarse shape alone tell apart: a fine-tuned model
that cannot beat it has learned nothing a ten-line model did not (``MRI_MIN_GAIN_OVER_BASELINE``
is measured against it). Pure numpy and scikit-learn, no torch, no Airflow.

It is saved as plain JSON (the scaler's and the regression's fitted arrays), never as a pickle: a
file in the models folder is data, and loading it runs no code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from include.files import atomic_write

# Side of the grey-level thumbnail each image becomes (32 x 32 = 1,024 features).
SIDE = 32
# L2 strength (scikit-learn's C, smaller is stronger): a few hundred images, a thousand features.
REGULARIZATION = 0.01
# The file a learned baseline's folder holds.
MODEL_FILE = "learned_baseline.json"
DESCRIPTION = f"scikit-learn LogisticRegression on {SIDE}x{SIDE} grey levels"


def pixel_features(images: Sequence[Image.Image], side: int = SIDE) -> np.ndarray:
    """(n, side * side) float64 in [0, 1]: each image in grey levels, shrunk by area averaging."""
    thumbnails = [image.convert("L").resize((side, side), Image.Resampling.BOX) for image in images]
    return np.stack([np.asarray(thumbnail, np.float64).ravel() / 255 for thumbnail in thumbnails])


@dataclass(frozen=True)
class LearnedBaseline:
    """A fitted learned baseline; ``predict_proba`` has one column per label, in ``labels`` order."""

    labels: tuple[str, ...]
    pipeline: Pipeline
    side: int = SIDE

    @property
    def hyperparameters(self) -> dict:
        return {"side": self.side, "C": self.pipeline[-1].C, "max_iter": self.pipeline[-1].max_iter}

    def predict_proba(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.pipeline.predict_proba(pixel_features(images, self.side))

    def save(self, directory: Path) -> None:
        """``directory/MODEL_FILE``: the labels and every fitted array, as JSON."""
        scaler, regression = self.pipeline
        directory.mkdir(parents=True, exist_ok=True)
        fitted = {
            "labels": list(self.labels),
            "side": self.side,
            "hyperparameters": self.hyperparameters,
            "mean": scaler.mean_.tolist(),
            "scale": scaler.scale_.tolist(),
            "coef": regression.coef_.tolist(),
            "intercept": regression.intercept_.tolist(),
        }
        atomic_write(directory / MODEL_FILE, json.dumps(fitted))


def fit(images: Sequence[Image.Image], targets: Sequence[int], labels: Sequence[str]) -> LearnedBaseline:
    """Fit on ``images`` whose class indices (into ``labels``) are ``targets``; every label must occur.

    lbfgs on standardized features: the same data gives the same model, whatever the thread count.
    """
    missing = sorted(set(range(len(labels))) - set(targets))
    if missing:
        raise ValueError(
            f"The learned baseline needs images of every label; none of {', '.join(labels[i] for i in missing)}."
        )
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=REGULARIZATION, max_iter=1000))
    pipeline.fit(pixel_features(images), np.asarray(targets))
    return LearnedBaseline(tuple(labels), pipeline)


def load(directory: Path) -> LearnedBaseline:
    """What :meth:`LearnedBaseline.save` wrote, as a fitted scikit-learn pipeline again."""
    fitted = json.loads((Path(directory) / MODEL_FILE).read_text())
    scaler = StandardScaler()
    scaler.mean_ = np.asarray(fitted["mean"])
    scaler.scale_ = np.asarray(fitted["scale"])
    scaler.var_ = scaler.scale_**2
    scaler.n_features_in_ = len(scaler.mean_)
    hyperparameters = fitted["hyperparameters"]
    regression = LogisticRegression(C=hyperparameters["C"], max_iter=hyperparameters["max_iter"])
    regression.coef_ = np.asarray(fitted["coef"])
    regression.intercept_ = np.asarray(fitted["intercept"])
    regression.classes_ = np.arange(len(fitted["labels"]))
    regression.n_features_in_ = scaler.n_features_in_
    pipeline = Pipeline([("scaler", scaler), ("regression", regression)])
    return LearnedBaseline(tuple(fitted["labels"]), pipeline, fitted["side"])
