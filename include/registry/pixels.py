"""What an image looks like, as hashes the registry keeps beside the file hash (migration 0008).

- :func:`pixel_hash`: the same pixels (mode and size included) give the same hash whatever the
  file around them: a PNG saved again with a text chunk, a JPEG with other metadata.
- :func:`perceptual_hash`: 256 bits that a resized or re-compressed copy keeps, but for a few:
  the signs of the 16x16 lowest frequencies of the image's 2-D DCT at 32x32 pixels, each against
  their median (pHash). 64 bits, as most libraries use, are too few for MRI slices: they all share
  the shape of a head, and two distinct slices of the phantom set had the same 64-bit hash
  (docs/architecture.md, Registry, has the distances measured).

Both take an image PIL has already decoded, so registering costs no second decode.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

# The perceptual hash: SIDE x SIDE grayscale pixels, the LOW x LOW lowest DCT frequencies.
SIDE, LOW = 32, 16
PERCEPTUAL_BITS = LOW * LOW
# The rows of the DCT-II matrix for the LOW lowest frequencies (its scale does not change a sign).
_DCT = np.cos(np.pi * np.outer(np.arange(LOW), 2 * np.arange(SIDE) + 1) / (2 * SIDE))


def pixel_hash(image: Image.Image) -> str:
    """SHA-256 (hex) of the decoded pixels, their mode, size and palette."""
    digest = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
    if image.palette is not None:  # mode P: the same indices under another palette are other colours
        digest.update(bytes(image.getpalette() or []))
    digest.update(image.tobytes())
    return digest.hexdigest()


def perceptual_hash(image: Image.Image) -> str:
    """The 256-bit DCT hash of the image's luminance, as 64 hex digits (see the module docstring)."""
    # Mode F keeps 16-bit gray as it is; "L" would clip 12-bit values stored in 16 bits to white.
    small = np.asarray(image.convert("F").resize((SIDE, SIDE), Image.Resampling.BILINEAR), dtype=np.float64)
    low = _DCT @ small @ _DCT.T
    return np.packbits(low > np.median(low)).tobytes().hex()
