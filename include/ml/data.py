"""Images of a snapshot as tensors: read by URI through a ``read`` callable (the storage layer,
local or S3), checked against the SHA-256 their snapshot recorded, decoded with
``predict.open_image``, processed once, augmented per batch in memory (geometry, then intensity).

No temp folders: bytes go from the store to memory, so nothing is shared between DAGs and a
failure leaves nothing to clean. Processing once, then augmenting tensors, keeps the loader far
from being the bottleneck (``benchmarks/finetune.py``).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from PIL import Image

from include.ml.predict import open_image, pixel_values

if TYPE_CHECKING:  # torch is imported on use: records.unevaluable_models needs label_mismatch only
    import torch

log = logging.getLogger(__name__)

# Reads overlap (S3 latency); decoding is light next to training.
READ_THREADS = 8


class LabelledImages(NamedTuple):
    images: list[Image.Image]
    targets: list[int]


class ContentChanged(ValueError):
    """A file's bytes are not the ones its snapshot recorded; the message names the file, both hashes, the fix."""


class LabelMismatch(ValueError):
    """Images or a model whose labels are not the classes asked for; the message lists both."""


def label_mismatch(model_labels: Sequence[str], configured: Sequence[str]) -> str | None:
    """Why a model with ``model_labels`` cannot stand for ``configured`` (MRI_LABELS), or None.

    Outputs are matched by name (``id2label``), so the order does not matter; the set does: a model
    trained before a class was added has no output for it and cannot be compared with ones that do.
    """
    if set(model_labels) == set(configured):
        return None
    return (
        f"the model's labels ({', '.join(model_labels)}) are not MRI_LABELS ({', '.join(configured)}): it was "
        "trained for other classes and cannot be evaluated on, or compared with, models of MRI_LABELS; train one "
        "on MRI_LABELS (train_model) or set MRI_LABELS back"
    )


def _checked(uri: str, data: bytes, expected: str | None) -> bytes:
    if expected is None:
        return data
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ContentChanged(
            f"{uri} is not the file its snapshot holds: SHA-256 {actual}, the snapshot (what the quality gate "
            f"passed) recorded {expected}. It was changed after the gate passed: restore the file or re-run the "
            "gate on the new content."
        )
    return data


def read_images(
    items: Sequence[tuple[str, ...]],
    read: Callable[[str], bytes],
    labels: Sequence[str],
    configured: Sequence[str] | None = None,
) -> LabelledImages:
    """Fetch, check and decode ``(uri, label, sha256)`` items, in order.

    :param items: the snapshot's members as ``(uri, label, sha256)``: every file's bytes must have the
        SHA-256 recorded (``ContentChanged`` names the file otherwise). ``(uri, label)`` reads unchecked.
    :param read: returns a URI's bytes (e.g. ``lambda uri: storage.read(storage.key(uri))``).
    :param labels: the classes in output order (a model's); every item's label must be one of them.
    :param configured: MRI_LABELS, when ``labels`` are a model's and may differ: named in the error.
    """
    unknown = sorted({item[1] for item in items} - set(labels))
    if unknown:
        if configured is None or list(configured) == list(labels):
            raise LabelMismatch(f"Labels {unknown} are not in MRI_LABELS ({', '.join(labels)}); add them or relabel.")
        raise LabelMismatch(
            f"Labels {unknown} of the images are not among the model's labels ({', '.join(labels)}); "
            f"MRI_LABELS ({', '.join(configured)})."
        )

    def fetch(item: tuple[str, ...]) -> Image.Image:
        return open_image(_checked(item[0], read(item[0]), item[2] if len(item) > 2 else None))

    with ThreadPoolExecutor(READ_THREADS) as pool:
        images = list(pool.map(fetch, items))
    return LabelledImages(images, [labels.index(item[1]) for item in items])


def to_tensor(processor: Any, images: list[Image.Image], chunk: int = 64) -> torch.Tensor:
    """All images through the processor once: (n, 3, size, size) float32."""
    import torch

    return torch.cat([pixel_values(processor, images[i : i + chunk]) for i in range(0, len(images), chunk)])


def holdout_keys(items: Sequence[tuple[str | None, ...]]) -> list[str]:
    """What puts each ``(uri, label[, sha256[, subject]])`` item on its side of the validation split
    (:func:`validation_split`): its subject where it has one, which every image of that subject
    shares, so a subject's slices are trained on or held out together; else its SHA-256 (its uri
    for an unchecked ``(uri, label)``). Subjects are prefixed, so none can pose as a content."""
    padded = ((*item, None, None)[:4] for item in items)
    return [f"subject:{subject}" if subject else sha256 or uri for uri, _, sha256, subject in padded]


def validation_split(
    keys: Sequence[str], targets: Sequence[int], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): the images of a key (:func:`holdout_keys`: a subject, else one
    content) are held out together when a hash of ``seed`` and the key falls below ``fraction``, so
    adding images never moves the other keys between the two. Per class, at least one key is held
    out and one trained on where it has two (the lowest and highest hashes decide); a class of one
    key trains. A key is never split: where a subject has images of two classes and the two
    corrections clash, every class keeps training images and a class may go without validation
    (logged).
    """
    targets = np.asarray(targets)
    unique_keys, key_of = np.unique(np.asarray(keys, dtype=str), return_inverse=True)
    draws = np.array(
        [int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") for key in unique_keys]
    )
    held = draws < fraction * 2.0**64
    if fraction > 0:
        classes = [np.unique(key_of[targets == cls]) for cls in np.unique(targets)]
        ordered = [members[np.argsort(draws[members], kind="stable")] for members in classes]
        for members, order in zip(classes, ordered, strict=True):
            if len(members) < 2:
                held[members] = False
                continue
            if not held[members].any():
                held[order[0]] = True
            if held[members].all():
                held[order[-1]] = False
        # A subject of two classes held out for one class's sake may have taken another class's
        # last training images: training comes first, that class gets its highest-hash key back.
        for members, order in zip(classes, ordered, strict=True):
            if held[members].all():
                held[order[-1]] = False
            elif len(members) > 1 and not held[members].any():
                log.warning(
                    "A class of %s keys has none held out for validation: its subjects also hold images of "
                    "another class, which must keep training images; its validation metrics are missing.",
                    len(members),
                )
    in_validation = held[key_of]
    return np.flatnonzero(~in_validation), np.flatnonzero(in_validation)


def augment(
    batch: torch.Tensor, generator: torch.Generator, degrees: float = 10.0, scale: float = 0.1, shift: float = 0.06
) -> torch.Tensor:
    """Random horizontal flip, rotation (+-``degrees``), scale (1 +- ``scale``) and shift (+- ``shift``
    of the side), one affine warp per image. Border padding: the slice's background is already there."""
    import torch
    import torch.nn.functional as F

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


def processor_normalisation(processor: Any) -> tuple[list[float], list[float]]:
    """The per-channel ``(mean, std)`` the processor normalises its [0, 1] images with: its tensors
    are ``(x - mean) / std``, what :func:`augment_intensity` undoes and redoes.

    A processor that does not normalise (``do_normalize`` false) falls back explicitly to mean 0,
    std 1: its tensors are the [0, 1] image itself. One that normalises without saying how, or does
    not rescale to [0, 1] (``do_rescale`` false), fails with what to do: intensities could not be
    put back where the model expects them.
    """
    name = type(processor).__name__
    if getattr(processor, "do_rescale", True) is False:
        raise ValueError(
            f"The image processor ({name}) does not rescale pixels to [0, 1] (do_rescale is false), which the "
            "intensity augmentation works on: set augment_intensity to false, or use a processor that rescales."
        )
    if getattr(processor, "do_normalize", True) is False:
        return [0.0] * 3, [1.0] * 3
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    if mean is None or std is None:
        raise ValueError(
            f"The image processor ({name}) normalises but has no image_mean/image_std, which the intensity "
            "augmentation needs to work on the [0, 1] image: set them, or set augment_intensity to false."
        )

    def per_channel(value: Any) -> list[float]:  # a processor may give one number for all channels
        return [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)] * 3

    return per_channel(mean), per_channel(std)


def augment_intensity(
    batch: torch.Tensor, generator: torch.Generator, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """A random scanner per image, on the [0, 1] image behind the processor's ``(x - mean) / std``:
    a gain in [0.8, 1.2], a smooth multiplicative bias field (coil shading: ``exp(s * surface /
    max|surface|)``, the surface a random quadratic over the image, ``s`` in [0, 0.3]) and Gaussian
    noise of SD in [0, 0.03]; clamped to [0, 1], then normalised again. Identical in the three
    channels (grey slices replicated to RGB). All draws from ``generator``. The ranges are wider than
    the phantom's own (gain 0.75-1.0, shading up to 0.275), so at their top the brightest CSF clips
    at 1. The phantom's ``launcher.phantom.subjects.bias_field`` draws the same kind of field.

    :param batch: processed images, (n, 3, H, W).
    :param mean: the processor's per-channel mean (:func:`processor_normalisation`).
    :param std: its per-channel standard deviation.
    """
    import torch

    n, _, height, width = batch.shape
    kind = {"dtype": batch.dtype}
    mean_ = torch.as_tensor(mean, **kind).reshape(1, -1, 1, 1)
    std_ = torch.as_tensor(std, **kind).reshape(1, -1, 1, 1)

    def uniform(low: float, high: float) -> torch.Tensor:
        return (low + (high - low) * torch.rand(n, generator=generator, **kind)).reshape(n, 1, 1, 1)

    gain = uniform(0.8, 1.2)
    strength = uniform(0.0, 0.3)
    coefficients = torch.randn(n, 5, generator=generator, **kind)
    sigma = uniform(0.0, 0.03)
    noise = torch.randn(n, 1, height, width, generator=generator, **kind)

    rows = torch.linspace(-1, 1, height, **kind).reshape(height, 1).expand(height, width)
    cols = torch.linspace(-1, 1, width, **kind).reshape(1, width).expand(height, width)
    terms = torch.stack([rows, cols, rows * cols, rows**2 - 1 / 3, cols**2 - 1 / 3])  # (5, H, W)
    surface = torch.einsum("nk,khw->nhw", coefficients, terms).unsqueeze(1)  # (n, 1, H, W)
    peak = surface.abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    field = torch.exp(strength * surface / peak)

    image = batch * std_ + mean_  # a new tensor: the rest is done in place on it (a third less time)
    return image.mul_(gain * field).add_(sigma * noise).clamp_(0.0, 1.0).sub_(mean_).div_(std_)
