"""File-system and object-key safe names, one rule for every module that builds them."""

from __future__ import annotations

import re

UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str) -> str:
    """``text`` with every run of characters outside ``A-Za-z0-9_.-`` replaced by one ``_``."""
    return UNSAFE.sub("_", text)
