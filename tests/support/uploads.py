"""Uploads for the gate and retraction tests: pictures with structure (a photo-like image survives
resizing and re-compression nearly unchanged, where random noise does not), registered as
``preprocess_<split>_data`` registers files."""

import io

import numpy as np
from PIL import Image

from include.config import settings
from include.quality.near_duplicates import POPCOUNT, hash_bytes
from include.registry.records import Limits, fingerprint, write_records
from include.storage import get_storage


def head(seed: int, side: int = 96) -> Image.Image:
    """A smooth grayscale picture, different for each seed: a few random low-frequency waves in an oval."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    waves = [rng.uniform(-1, 1) * np.cos(np.pi * (rng.integers(1, 6) * x + rng.integers(1, 6) * y)) for _ in range(6)]
    picture = sum(waves)
    picture = np.where((x - 0.5) ** 2 / 0.16 + (y - 0.5) ** 2 / 0.2 < 1, picture, picture.min())
    picture = (picture - picture.min()) / (picture.max() - picture.min()) * 255
    return Image.fromarray(picture.astype(np.uint8), mode="L")


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    """``image`` as a file's bytes (PIL's ``save`` options, e.g. ``quality``, ``pnginfo``)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def hash_distance(a: str, b: str) -> int:
    """Bits in which two hex hashes differ."""
    return int(POPCOUNT[hash_bytes([a]) ^ hash_bytes([b])].sum())


def upload(db, split: str, name: str, data: bytes, run_id: str) -> str:
    """Put a file in raw/<split>/ of the configured storage and register it; return its uri."""
    storage = get_storage()
    uri = storage.uri(f"raw/{split}/{name}")
    storage.write(storage.key(uri), data)
    write_records(db, [fingerprint(storage, uri, split, run_id, settings().labels, {}, Limits(64, 10**7))], run_id)
    return uri
