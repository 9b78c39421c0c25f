"""Named snapshots of a split: what a quality gate validated, and exactly what a model saw.

A snapshot is the set of registered contents of a split's files (retracted files left out) at one
moment, named by the SHA-256 of its sorted ``content_hash label`` lines (`` subject`` added where an
image has one): the same data always has the same name, on every backend. Its members
(``sql/split_members.sql``) are stored in ``snapshot_images``, so rows registered after the gate
ran wait for the next gate run instead of slipping into training. ``quality_runs.snapshot`` records
which snapshot a gate run validated; :func:`passed_snapshot` is how training and evaluation ask for
gated data.

Reading and freezing share one transaction: :func:`stage_members` copies the members into a
temporary table of that transaction and returns them, and :func:`freeze_staged` stores that copy by
``INSERT ... SELECT``. So the rows frozen are the rows read, whatever is written meanwhile, and no
row passes through Python twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, NamedTuple

from include.db import RegistryDatabase
from include.db.queries import bound, sql_file

# The columns split_members.sql returns, in order.
MEMBER_COLUMNS = (
    "content_hash",
    "label",
    "uri",
    "split",
    "width",
    "height",
    "mode",
    "pixel_key",
    "perceptual_hash",
    "subject",
)
# The temporary table holding the members read in a transaction (gone with its connection).
STAGED_MEMBERS = "staged_members"


class SnapshotImage(NamedTuple):
    content_hash: str
    label: str
    uri: str
    subject: str | None = None  # the patient or study (migration 0010); None where none was given


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


def snapshot_id(members: Iterable[tuple[str, ...]]) -> str:
    """The name of a snapshot: SHA-256 of its sorted ``content_hash label`` lines, `` subject`` added
    where a member ``(content_hash, label[, subject])`` has one. The subject decides the fine-tune's
    validation holdout, so it is part of the data named; a snapshot without subjects keeps the name
    it had before subjects existed."""
    lines = sorted(" ".join([h, label, *filter(None, subject)]) for h, label, *subject in members)
    return hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()


def member_image(row: tuple) -> SnapshotImage:
    """A row of ``MEMBER_COLUMNS`` as a snapshot's member."""
    member = dict(zip(MEMBER_COLUMNS, row, strict=True))
    return SnapshotImage(*(member[name] for name in SnapshotImage._fields))


def stage_members(cursor: Any, placeholder: str, split: str) -> list[tuple]:
    """Copy the members of ``split`` as they are now into this transaction's temporary table, and
    return them (rows of ``MEMBER_COLUMNS``, in no order).

    :param cursor: the cursor of a transaction that may still freeze them (:func:`freeze_staged`).
    """
    members, values = bound(sql_file("split_members.sql"), {"split": split}, placeholder)
    cursor.execute(f"CREATE TEMPORARY TABLE {STAGED_MEMBERS} AS {members}", values)
    cursor.execute(f"SELECT {', '.join(MEMBER_COLUMNS)} FROM {STAGED_MEMBERS}")
    return cursor.fetchall()


def freeze_staged(cursor: Any, placeholder: str, name: str) -> None:
    """Store the members :func:`stage_members` read in this transaction as snapshot ``name``.

    A snapshot is written in one transaction, so one already stored (the same data gated again) is
    whole, and nothing is added to it.
    """
    cursor.execute(f"SELECT snapshot FROM snapshot_images WHERE snapshot = {placeholder} LIMIT 1", (name,))
    if cursor.fetchone() is None:
        cursor.execute(
            "INSERT INTO snapshot_images (snapshot, split, content_hash, label, uri, subject) "
            f"SELECT CAST({placeholder} AS TEXT), split, content_hash, label, uri, subject FROM {STAGED_MEMBERS}",
            (name,),
        )


def take_snapshot(db: RegistryDatabase, split: str) -> Snapshot:
    """Freeze the members of ``split`` as they are now, unvalidated (the gate validates them first:
    ``include.quality.gate.run_gate``), and return them. Idempotent.

    :param db: the registry database.
    :param split: ``train`` or ``test``.
    """
    with db.transaction() as cursor:
        images = [member_image(row) for row in stage_members(cursor, db.placeholder, split)]
        name = snapshot_id([(i.content_hash, i.label, i.subject) for i in images])
        freeze_staged(cursor, db.placeholder, name)
    return Snapshot(name, split, sorted(images))


def load_snapshot(db: RegistryDatabase, name: str) -> Snapshot:
    """The stored members of snapshot ``name``, sorted by content hash."""
    rows = db.fetch_all(*db.statement("snapshot_members.sql", snapshot=name))
    if not rows:
        raise NoGatedSnapshotError(f"Snapshot {name!r} has no stored members in {db!r}.")
    return Snapshot(name, rows[0][0], [SnapshotImage(*row[1:]) for row in rows])


def passed_snapshot_id(db: RegistryDatabase, split: str) -> str | None:
    """The name of the snapshot the newest passing quality-gate run of ``split`` validated, or None."""
    rows = db.fetch_all(*db.statement("passed_snapshot.sql", split=split))
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
