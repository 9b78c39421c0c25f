"""Landing -> raw: move exactly the listed files, quarantine what is not an image, lose nothing.

A file is copied to its destination first and deleted from landing only after the copy exists,
one key at a time: a crash or an unreachable store leaves it in landing for the next run. A
destination name is never overwritten: same bytes count as a duplicate upload, other bytes get a
name with their content fingerprint, so both uploads survive.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
from dataclasses import asdict, dataclass

from include.storage import Storage

log = logging.getLogger(__name__)

# Leading bytes of the image formats the pipeline reads.
IMAGE_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
SIGNATURE_BYTES = max(len(s) for s in IMAGE_SIGNATURES)


@dataclass(frozen=True)
class Outcome:
    source: str
    destination: str
    outcome: str  # moved | duplicate | quarantined
    reason: str | None = None


def landing_prefix(split: str) -> str:
    return f"landing/{split}"


def batches(keys: list[str], size: int) -> list[list[str]]:
    """Consecutive chunks of ``size`` keys: one mapped task each, far below max_map_length."""
    return [keys[i : i + size] for i in range(0, len(keys), size)]


def quarantine_reason(storage: Storage, key: str) -> str | None:
    """Why ``key`` is not an image the pipeline can take, or None. Only the first bytes are read;
    decoding and fingerprinting happen at registration."""
    try:
        head = storage.read(key, SIGNATURE_BYTES)
    except OSError as err:  # e.g. a symlink, refused on purpose
        return f"unreadable: {err.strerror or err}"
    if not head:
        return "empty file (0 bytes)"
    if not any(head.startswith(signature) for signature in IMAGE_SIGNATURES):
        return f"not an image: starts with {head[:8]!r}, expected {' or '.join(IMAGE_SIGNATURES.values())}"
    return None


def fingerprinted(key: str, data: bytes) -> str:
    """``raw/train/glioma (1).jpg`` -> ``raw/train/glioma (1) (upload 3f9a1c2b0e4d).jpg``."""
    stem, suffix = posixpath.splitext(key)
    return f"{stem} (upload {hashlib.sha256(data).hexdigest()[:12]}){suffix}"


def place(storage: Storage, source: str, destination: str) -> tuple[str, bool]:
    """Copy ``source`` to ``destination`` or, if taken by other bytes, to a fingerprinted name.

    :return: the key it now lives at, and whether those bytes were already there (a duplicate).
    """
    if storage.copy_new(source, destination):
        return destination, False
    data = storage.read(source)
    if storage.read(destination) == data:
        return destination, True
    alternative = fingerprinted(destination, data)
    if storage.copy_new(source, alternative):
        return alternative, False
    if storage.read(alternative) == data:
        return alternative, True
    raise RuntimeError(f"{alternative} exists with other bytes than {source}; left in landing")


def ingest_file(storage: Storage, key: str, split: str) -> Outcome:
    """Move one landing file to raw/ or quarantine/, keeping its path below landing/<split>/."""
    relative = key[len(landing_prefix(split)) + 1 :]
    reason = quarantine_reason(storage, key)
    area = "quarantine" if reason else "raw"
    destination, duplicate = place(storage, key, f"{area}/{split}/{relative}")
    storage.delete(key)
    outcome = "quarantined" if reason else ("duplicate" if duplicate else "moved")
    return Outcome(key, destination, outcome, reason)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def write_outcome_log(storage: Storage, split: str, run_id: str, batch: int, outcomes: list[Outcome]) -> str:
    """Persist one batch's outcomes as JSON lines in storage, where they outlive Airflow's XCom."""
    key = f"ingest_log/{split}/{safe_name(run_id)}/batch-{batch:05d}.jsonl"
    storage.write(key, "".join(json.dumps(asdict(o)) + "\n" for o in outcomes).encode())
    return key
