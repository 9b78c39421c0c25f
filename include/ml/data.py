"""Images of a snapshot as tensors: read by URI through a ``read`` callable (the storage layer,
local or S3), decoded with ``predict.open_image``, processed once, augmented per batch in memory.

No temp folders: bytes go from the store to memory, so nothing is shared between DAGs and a
failure leaves nothing to clean. Processing once, then augmenting tensors, keeps the loader far
from being the bottleneck (``benchmarks/finetune.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from include.ml.predict import open_image, pixel_values

# Reads overlap (S3 latency); decoding is light next to training.
READ_THREADS = 8


class LabelledImages(NamedTuple):
    images: list[Image.Image]
    targets: list[int]


def read_images(
    items: Sequence[tuple[str, str]], read: Callable[[str], bytes], labels: Sequence[str]
) -> LabelledImages:
    """Fetch and decode ``(uri, label)`` items, in order.

    :param items: the snapshot's members as ``(uri, label)``.
    :param read: returns a URI's bytes (e.g. ``lambda uri: storage.read(storage.key(uri))``).
    :param labels: the classes in output order; every item's label must be one of them.
    """
    unknown = sorted({label for _, label in items} - set(labels))
    if unknown:
        raise ValueError(f"Labels {unknown} are not in MRI_LABELS ({', '.join(labels)}); add them or relabel.")
    with ThreadPoolExecutor(READ_THREADS) as pool:
        images = list(pool.map(lambda item: open_image(read(item[0])), items))
    return LabelledImages(images, [labels.index(label) for _, label in items])


def to_tensor(processor: Any, images: list[Image.Image], chunk: int = 64) -> torch.Tensor:
    """All images through the processor once: (n, 3, size, size) float32."""
    return torch.cat([pixel_values(processor, images[i : i + chunk]) for i in range(0, len(images), chunk)])


def stratified_split(targets: Sequence[int], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): ``fraction`` of each class, at least one where it has two."""
    rng = np.random.default_rng(seed)
    targets = np.asarray(targets)
    train, validation = [], []
    for cls in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == cls))
        take = min(len(members) - 1, max(1, round(fraction * len(members)))) if fraction > 0 else 0
        validation.extend(members[:take])
        train.extend(members[take:])
    return np.sort(np.array(train, dtype=int)), np.sort(np.array(validation, dtype=int))


def augment(
    batch: torch.Tensor, generator: torch.Generator, degrees: float = 10.0, scale: float = 0.1, shift: float = 0.06
) -> torch.Tensor:
    """Random horizontal flip, rotation (+-``degrees``), scale (1 +- ``scale``) and shift (+- ``shift``
    of the side), one affine warp per image. Border padding: the slice's background is already there."""
    n = batch.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    angle = uniform(-degrees, degrees) * math.pi / 180
    zoom = uniform(1 - scale, 1 + scale)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, uniform(-shift, shift) * 2], dim=1),
            torch.stack([sin * flip, cos, uniform(-shift, shift) * 2], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
