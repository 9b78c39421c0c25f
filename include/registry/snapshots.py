"""Named snapshots of a split: what a quality gate validated, and exactly what a model saw.

A snapshot is the set of registered images of a split at one moment, named by the SHA-256 of its
sorted ``content_hash label`` lines: the same data always has the same name, on every backend.
Its members are stored in ``snapshot_images``, so rows registered after the gate ran wait for the
next gate run instead of slipping into training. ``quality_runs.snapshot`` records which snapshot a
gate run validated; :func:`passed_snapshot` is how training and evaluation ask for gated data.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from include.db import RegistryDatabase

SNAPSHOT_COLUMNS = ("snapshot", "split", "content_hash", "label", "uri")


class SnapshotImage(NamedTuple):
    content_hash: str
    label: str
    uri: str


class Snapshot(NamedTuple):
    snapshot_id: str
    split: str
    images: list[SnapshotImage]

    def label_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for image in self.images:
            counts[image.label] = counts.get(image.label, 0) + 1
        return counts


class NoGatedSnapshotError(LookupError):
    """No quality-gate run has passed for the split yet; the message says what to run."""


def snapshot_id(pairs: list[tuple[str, str]]) -> str:
    """The name of a snapshot: SHA-256 of its sorted ``content_hash label`` lines."""
    digest = hashlib.sha256()
    for content_hash, label in sorted(pairs):
        digest.update(f"{content_hash} {label}\n".encode())
    return digest.hexdigest()


def take_snapshot(db: RegistryDatabase, split: str) -> Snapshot:
    """Freeze the registered images of ``split`` now and store the members (idempotent).

    :param db: the registry database.
    :param split: ``train`` or ``test``.
    """
    p = db.placeholder
    with db.transaction() as cursor:
        cursor.execute(
            f"SELECT content_hash, label, uri FROM images WHERE split = {p} AND status = 'registered' "
            "ORDER BY content_hash",
            (split,),
        )
        images = [SnapshotImage(*row) for row in cursor.fetchall()]
        name = snapshot_id([(i.content_hash, i.label) for i in images])
        # Re-taking the same snapshot (a retried gate, the on-demand report) adds nothing.
        db.insert_new_rows(
            cursor,
            "snapshot_images",
            SNAPSHOT_COLUMNS,
            ("snapshot", "content_hash"),
            [(name, split, *i) for i in images],
        )
    return Snapshot(name, split, images)


def load_snapshot(db: RegistryDatabase, name: str) -> Snapshot:
    """The stored members of snapshot ``name``, sorted by content hash."""
    rows = db.fetch_all(
        f"SELECT split, content_hash, label, uri FROM snapshot_images WHERE snapshot = {db.placeholder} "
        "ORDER BY content_hash",
        (name,),
    )
    if not rows:
        raise NoGatedSnapshotError(f"Snapshot {name!r} has no stored members in {db!r}.")
    return Snapshot(name, rows[0][0], [SnapshotImage(*row[1:]) for row in rows])


def passed_snapshot_id(db: RegistryDatabase, split: str) -> str | None:
    """The name of the snapshot the newest passing quality-gate run of ``split`` validated, or None."""
    rows = db.fetch_all(
        f"SELECT snapshot FROM quality_runs WHERE split = {db.placeholder} AND success AND snapshot IS NOT NULL "
        "ORDER BY created_at DESC, run_id DESC LIMIT 1",
        (split,),
    )
    return rows[0][0] if rows else None


def passed_snapshot(db: RegistryDatabase, split: str) -> Snapshot:
    """The snapshot of the newest quality-gate run that passed for ``split``.

    :raises NoGatedSnapshotError: when no gate run has passed yet.
    """
    name = passed_snapshot_id(db, split)
    if name is None:
        raise NoGatedSnapshotError(
            f"No quality-gate run has passed for split {split!r} in {db!r}: training and evaluation take "
            f"only gated data. Let quality_gate_{split} run (it follows the images/{split} Dataset) and fix "
            "what it reports."
        )
    return load_snapshot(db, name)
