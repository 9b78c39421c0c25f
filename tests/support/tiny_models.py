"""The tiny ResNet every ML test uses: real weights and a real bundle, a few thousand parameters,
so a test trains, saves and predicts in seconds. torch is imported on use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LABELS = ("glioma", "meningioma", "pituitary")
TINY_RESNET = {"layer_type": "basic", "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]}


def tiny_resnet(seed: int = 0, num_labels: int = 2) -> Any:
    """An untrained ``ResNetForImageClassification`` for the first ``num_labels`` of LABELS."""
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(seed)
    names = LABELS[:num_labels]
    config = ResNetConfig(
        **TINY_RESNET, id2label=dict(enumerate(names)), label2id={name: i for i, name in enumerate(names)}
    )
    return ResNetForImageClassification(config)


def save_tiny_model(directory: Path, seed: int = 0, metadata: dict | None = None, size: int = 32) -> Path:
    """A 2-class tiny ResNet and its processor (``size`` px) saved as training saves one; returns the folder."""
    from transformers import ConvNextImageProcessorPil

    from include.ml.bundle import save_model

    processor = ConvNextImageProcessorPil(size={"shortest_edge": size}, crop_pct=1.0)
    return save_model(tiny_resnet(seed), processor, directory, {"hyperparameters": {"seed": seed}, **(metadata or {})})


def served_bundle(directory: Path, seed: int = 3, model_id: str = "m-tiny", size: int = 32) -> Path:
    """A tiny model saved as a promoted release: the bundle plus its deployment record."""
    import json

    from include.ml.bundle import DEPLOYMENT_FILE

    save_tiny_model(directory, seed, {"model_id": model_id}, size)
    record = {"model_id": model_id, "metric": "roc_auc", "value": 0.93}
    (directory / DEPLOYMENT_FILE).write_text(json.dumps(record))
    return directory


def production_with_one_release(root: Path) -> Path:
    """``<production_dir>`` with ``current -> releases/r1``, as deploy_best_model leaves it."""
    from include.deploy.releases import LocalBundles

    bundles = LocalBundles(root)
    served_bundle(bundles.release_dir("r1"))
    bundles.switch("r1")
    return root
