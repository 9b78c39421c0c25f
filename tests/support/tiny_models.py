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


def save_tiny_model(directory: Path, seed: int = 0, metadata: dict | None = None) -> Path:
    """A 2-class tiny ResNet and its processor (32 px) saved as training saves one; returns the folder."""
    from transformers import ConvNextImageProcessorPil

    from include.ml.bundle import save_model

    processor = ConvNextImageProcessorPil(size={"shortest_edge": 32}, crop_pct=1.0)
    return save_model(tiny_resnet(seed), processor, directory, {"hyperparameters": {"seed": seed}, **(metadata or {})})
