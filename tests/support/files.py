"""Small files the ingestion and registry tests drop into storage, and a look at what a prefix holds."""

import io

from PIL import Image


def jpeg(seed: int, side: int = 32) -> bytes:
    """A valid grayscale JPEG whose bytes (and so content hash) follow ``seed``."""
    buffer = io.BytesIO()
    Image.new("L", (side, side), color=seed % 256).save(buffer, format="JPEG")
    return buffer.getvalue()


def keys(storage, prefix: str) -> list[str]:
    return [o.key for o in storage.list(prefix)]
