"""What a model sees and says: bytes -> RGB image -> class probabilities.

Evaluation and serving call these same two functions, so a promoted bundle predicts exactly what
evaluation measured. The image processor saved with the model does resizing and normalisation.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

# PIL modes of single-channel images with more than 8 bits (16-bit PNG, 32-bit int, float).
WIDE_GRAYSCALE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


class ImageTooLarge(ValueError):
    """An image with more pixels than allowed, refused from its header before any pixel is decoded."""


def open_header(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """The image in ``data`` with only its header read: nothing is decoded yet.

    :param max_pixels: refuse (ImageTooLarge) an image whose header declares more pixels than this
        (MRI_MAX_IMAGE_PIXELS): a small file can declare a huge image. The check is ours rather than
        PIL's process-wide ``Image.MAX_IMAGE_PIXELS``, so no caller changes it for another.
    """
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as err:  # PIL's own limit, over twice Image.MAX_IMAGE_PIXELS
        raise ImageTooLarge(f"too large to decode ({err})") from None
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(
            f"too large: {width}x{height} = {width * height} pixels, over MRI_MAX_IMAGE_PIXELS={max_pixels} "
            "(refused from its header, not decoded)"
        )
    return image


def open_image(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """Decode ``data`` into an 8-bit RGB image, whatever its mode.

    16-bit (and 32-bit) grayscale is scaled by the image's own maximum: MRI exports often keep
    12-bit values in a 16-bit container, so a fixed /257 would leave them nearly black. RGBA and
    palette images are laid on black, the background of an MRI slice. The image processor for
    ResNet expects 3 channels; a grayscale image given to it as is fails or is misread.

    :param data: the file's bytes (JPEG, PNG, anything PIL decodes).
    :param max_pixels: see ``open_header``.
    """
    image = open_header(data, max_pixels)
    image.load()
    if image.mode in WIDE_GRAYSCALE_MODES:
        pixels = np.asarray(image, dtype=np.float64)
        top = pixels.max()
        scaled = np.zeros_like(pixels) if top <= 0 else np.clip(pixels, 0, None) * (255.0 / top)
        image = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA", "P"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def pixel_values(processor: Any, images: list[Image.Image]) -> torch.Tensor:
    """The processor's tensor for ``images``: (n, 3, size, size), resized and normalised."""
    return processor(images=images, return_tensors="pt")["pixel_values"]


def predict_proba(model: Any, processor: Any, images: list[Image.Image], batch_size: int = 32) -> np.ndarray:
    """Softmax probabilities, shape (n, num_labels), columns in ``model.config.id2label`` order.

    :param model: a ``*ForImageClassification`` model.
    :param processor: the image processor saved with it.
    :param images: RGB images (see :func:`open_image`).
    :param batch_size: images per forward pass.
    """
    import torch

    num_labels = model.config.num_labels
    if not images:
        return np.zeros((0, num_labels), dtype=np.float32)
    model.eval()
    batches = [images[start : start + batch_size] for start in range(0, len(images), batch_size)]
    chunks = []
    # The processor (PIL resize, numpy normalise) prepares the next batch while the model runs on
    # this one (benchmarks/finetune.py measures what the overlap buys).
    with ThreadPoolExecutor(max_workers=1) as prefetch, torch.inference_mode():
        upcoming = prefetch.submit(pixel_values, processor, batches[0])
        for number in range(len(batches)):
            pixels = upcoming.result()
            if number + 1 < len(batches):
                upcoming = prefetch.submit(pixel_values, processor, batches[number + 1])
            logits = model(pixel_values=pixels).logits
            chunks.append(torch.softmax(logits.float(), dim=-1).numpy())
    return np.concatenate(chunks)
