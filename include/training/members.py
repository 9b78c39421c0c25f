"""The gated snapshot a fine-tune trains on, handed to it through the storage layer.

A fine-tune runs for minutes outside the registry pool (in it, it would hold the one DuckDB slot that
long), so it never opens the registry. The planning task, in the pool, reads the snapshot's members
once and writes them to ``snapshots/<split>/<snapshot id>.json`` in the storage, which every worker
reaches; XCom carries only that key and the file's SHA-256. A snapshot's members never change, so
the same snapshot always gives the same file and a second run rewrites it unchanged. The fine-tune
checks the file against that SHA-256 (what was gated is verified when it is read again), and each
image against its own as it reads it.
"""

from __future__ import annotations

import hashlib
import json

from include.ml.data import ContentChanged
from include.registry.snapshots import Snapshot
from include.storage import Storage


def write_members(storage: Storage, snapshot: Snapshot) -> dict:
    """Write the ``(uri, label, sha256, subject)`` members of ``snapshot`` (subject None where it has
    none); return what a fine-tune needs to read them.

    :return: ``snapshot_id``, ``key`` (in the storage) and ``sha256`` (of the file).
    """
    key = f"snapshots/{snapshot.split}/{snapshot.snapshot_id}.json"
    items = [[image.uri, image.label, image.content_hash, image.subject] for image in snapshot.images]
    data = json.dumps(items).encode()
    storage.write(key, data)
    return {"snapshot_id": snapshot.snapshot_id, "key": key, "sha256": hashlib.sha256(data).hexdigest()}


def read_members(storage: Storage, members: dict) -> list[tuple[str, str, str, str | None]]:
    """The ``(uri, label, sha256, subject)`` items :func:`write_members` wrote.

    :param members: what :func:`write_members` returned.
    :raises ContentChanged: the file is not the one written, naming it and both hashes.
    """
    data = storage.read(members["key"])
    actual = hashlib.sha256(data).hexdigest()
    if actual != members["sha256"]:
        raise ContentChanged(
            f"{storage.uri(members['key'])} is not the member list of snapshot {members['snapshot_id']} the sweep "
            f"was planned with: SHA-256 {actual}, planned {members['sha256']}. It was changed after planning: "
            "run train_model again (its plan_sweep writes the list again from the registry)."
        )
    return [tuple(item) for item in json.loads(data)]
