"""One split of the registry as the DataFrames the suites validate, read in the gate's transaction.

Read through the backend layer (``db.transaction()``, bound values) rather than a Great Expectations SQL data
source: GX 1.24 cannot validate DuckDB through SQLAlchemy (duckdb-engine 0.17 + duckdb 2.x fail
with ``MetricResolutionError``), so one path serves both backends (docs/architecture.md has the
measurements that chose it for Postgres as well).

Leakage and label conflicts compare pixels (views of migration 0008 over ``live_files``: the files
not retracted); near-duplicates compare perceptual hashes across splits; leakage by subject compares
the subjects of registered files (view ``leaked_subjects``, migration 0010; files without a subject
are not judged). Files registered before 0008 have no pixel hashes: they are compared by their file
hash, and not for near-duplicates. Each example of a failed measure names the two uploads, the newer
first (for a subject, its newest upload), and the command that takes one back.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from typing import Any

import pandas as pd

from include.config import Settings
from include.db.queries import bound, sql_file
from include.quality.near_duplicates import close_pairs, hash_bytes
from include.registry.snapshots import MEMBER_COLUMNS, snapshot_id, stage_members

log = logging.getLogger(__name__)

# The columns of a snapshot's rows the suites validate, in this order (the schema expectation pins the set).
IMAGE_COLUMNS = ("content_hash", "label", "uri", "split", "width", "height", "mode")
# The columns of live_files an example names an upload by.
UPLOAD_COLUMNS = ("uri", "split", "label", "registered_at")
# Subjects a failure names one by one; the rest are counted.
SUBJECTS_NAMED = 10


@dataclass(frozen=True)
class SplitFrames:
    """What a gate run validates for one split.

    :param split: ``train`` or ``test``.
    :param snapshot_id: the name the snapshot of these rows would have (:func:`snapshot_id`).
    :param images: one row per registered content of the split, ``IMAGE_COLUMNS``.
    :param measures: one row of split-level measures (see :func:`split_measures`).
    :param class_counts: images per configured label (unknown labels are not counted).
    """

    split: str
    snapshot_id: str
    images: pd.DataFrame
    measures: pd.DataFrame
    class_counts: dict[str, int]


@dataclass(frozen=True)
class Finding:
    """A split-level measure that counts problems: how many, and one of them in words (or None)."""

    count: int
    example: str | None = None


def read_split(cursor: Any, p: str, split: str, cfg: Settings) -> SplitFrames:
    """Read the members of ``split`` (staged in this transaction: see
    ``include.registry.snapshots.stage_members``) and the split-level facts.

    :param cursor: the cursor of the transaction that may freeze what is read.
    :param p: the backend's placeholder.
    :param split: ``train`` or ``test``.
    :param cfg: the settings (MRI_LABELS, MRI_QUALITY_NEAR_DUPLICATE_BITS).
    """
    members = pd.DataFrame(stage_members(cursor, p, split), columns=list(MEMBER_COLUMNS))
    cursor.execute(f"SELECT COUNT(*) FROM images WHERE split = {p} AND status = 'quarantined'", (split,))
    [(quarantined,)] = cursor.fetchall()
    leaks, conflicts = _pixel_problems(cursor, split)
    near = _near_duplicates(cursor, p, split, members, cfg.quality_near_duplicate_bits)
    subjects = _leaked_subjects(cursor, p)
    images = members[list(IMAGE_COLUMNS)]
    name = snapshot_id(
        (h, str(label), subject)
        for h, label, subject in zip(members["content_hash"], members["label"], members["subject"], strict=True)
    )
    counts = {label: int(n) for label, n in images["label"].value_counts().items() if label in cfg.labels}
    counts = {label: counts.get(label, 0) for label in cfg.labels}
    measures = split_measures(counts, len(images), int(quarantined), leaks, conflicts, near, subjects)
    log.info("%s: %s registered images %s, snapshot %s", split, len(images), counts, name[:12])
    return SplitFrames(split, name, images, measures, counts)


def split_measures(
    counts: dict[str, int],
    registered: int,
    quarantined: int,
    leaks: Finding,
    conflicts: Finding,
    near: Finding,
    subjects: Finding,
) -> pd.DataFrame:
    """One row: the measures that belong to the split, not to any one image."""
    smallest = min(counts, key=lambda label: (counts[label], label))
    largest = max(counts.values())
    total = registered + quarantined
    return pd.DataFrame(
        [
            {
                "smallest_class": smallest,
                "smallest_class_images": counts[smallest],
                # 0 when every class is empty: an empty split is as unbalanced as it gets.
                "class_ratio": counts[smallest] / largest if largest else 0.0,
                "quarantined": quarantined,
                "quarantine_rate": quarantined / total if total else 0.0,
                "leaked_contents": leaks.count,
                "leak_example": leaks.example,
                "label_conflicts": conflicts.count,
                "conflict_example": conflicts.example,
                "near_duplicates": near.count,
                "near_duplicate_example": near.example,
                "leaked_subjects": subjects.count,
                "leaked_subject_example": subjects.example,
            }
        ]
    )


def _pixel_problems(cursor: Any, split: str) -> tuple[Finding, Finding]:
    """Leakage (pixels in both splits: every leak concerns this split) and label conflicts (pixels
    under two labels, with a file in this split), from one pass over view ``pixel_groups``; the
    files of each problem are read only when there is one."""
    problem = "first_split <> last_split OR first_label <> last_label"
    cursor.execute(f"SELECT COUNT(*) FROM pixel_groups WHERE {problem}")
    if not cursor.fetchone()[0]:
        return Finding(0), Finding(0)
    cursor.execute(
        "SELECT g.pixel_key, g.first_split <> g.last_split, g.first_label <> g.last_label, "
        f"{', '.join(f'f.{column}' for column in UPLOAD_COLUMNS)} "
        f"FROM pixel_groups AS g JOIN live_files AS f ON f.pixel_key = g.pixel_key WHERE {problem}"
    )
    leaked: dict[str, list[tuple]] = {}
    conflicting: dict[str, list[tuple]] = {}
    for key, leak, conflict, *upload in cursor.fetchall():
        if leak:
            leaked.setdefault(key, []).append(tuple(upload))
        if conflict and upload[2] is not None:
            conflicting.setdefault(key, []).append(tuple(upload))
    ours = sorted(key for key, files in conflicting.items() if any(f[1] == split for f in files))
    leaks = Finding(len(leaked), _two_uploads(leaked[min(leaked)], "split", "hold the same pixels") if leaked else None)
    conflicts = Finding(
        len(ours),
        _two_uploads(conflicting[ours[0]], "label", "hold the same pixels under two labels") if ours else None,
    )
    return leaks, conflicts


def _near_duplicates(cursor: Any, p: str, split: str, members: pd.DataFrame, max_bits: int) -> Finding:
    """Pairs of images, one of this split's ``members`` and one of the other split's files, whose
    perceptual hashes differ in at most ``max_bits`` bits but whose pixels differ (the same pixels
    are a leak, counted there)."""
    cursor.execute(*bound(sql_file("near_duplicate_candidates.sql"), {"split": split}, p))
    theirs = cursor.fetchall()
    ours = members[members["perceptual_hash"].notna()]
    if not theirs or ours.empty:
        return Finding(0)
    found = close_pairs(hash_bytes(ours["perceptual_hash"].tolist()), hash_bytes([h for *_, h in theirs]), max_bits)
    our_keys, our_uris = ours["pixel_key"].tolist(), ours["uri"].tolist()
    pairs = [(d, our_uris[i], theirs[j][0]) for i, j, d in found if our_keys[i] != theirs[j][1]]
    if not pairs:
        return Finding(0)
    distance, mine, other = min(pairs)
    cursor.execute(f"SELECT {', '.join(UPLOAD_COLUMNS)} FROM live_files WHERE uri IN ({p}, {p})", (mine, other))
    what = f"look alike: perceptual hashes {distance} of 256 bits apart (MRI_QUALITY_NEAR_DUPLICATE_BITS={max_bits})"
    return Finding(len(pairs), _two_uploads(cursor.fetchall(), apart="split", what=what))


def _leaked_subjects(cursor: Any, p: str) -> Finding:
    """Subjects with registered files in both splits (view ``leaked_subjects``: every one concerns
    this split), named with their files per split, and the first one's newest upload with the command
    that takes it back."""
    cursor.execute("SELECT subject, train_files, test_files FROM leaked_subjects ORDER BY subject")
    leaked = cursor.fetchall()
    if not leaked:
        return Finding(0)
    named = ", ".join(
        f"{subject!r} (train {train}, test {test} files)" for subject, train, test in leaked[:SUBJECTS_NAMED]
    )
    more = f" and {len(leaked) - SUBJECTS_NAMED} more" if len(leaked) > SUBJECTS_NAMED else ""
    first = leaked[0][0]
    cursor.execute(
        f"SELECT {', '.join(UPLOAD_COLUMNS)} FROM live_files WHERE subject = {p} AND status = 'registered'", (first,)
    )
    newest = max(cursor.fetchall(), key=lambda f: (f[3], f[0]))
    return Finding(
        len(leaked),
        f"{named}{more} in both splits: a subject's files belong in one split, so take back those in the other; "
        f"the newest upload of {first!r} is {_upload(newest)}: {_retract_command(newest[0])}",
    )


def _two_uploads(files: list[tuple], apart: str, what: str) -> str:
    """The newest of ``files`` (rows of UPLOAD_COLUMNS) and the newest one whose ``apart`` column
    differs from it, in words, with the command that takes an upload back."""
    column = UPLOAD_COLUMNS.index(apart)
    newer, *rest = sorted(files, key=lambda f: (f[3], f[0]), reverse=True)
    older = next(f for f in rest if f[column] != newer[column])
    named = " and ".join(_upload(f) for f in (newer, older))
    return f"{named} {what}; take the misplaced one back: {_retract_command(newer[0])} (or the other's URI)"


def _upload(file: tuple) -> str:
    """A row of UPLOAD_COLUMNS in words."""
    uri, split, label, at = file
    return f"{uri} ({split}, {label}, registered {at:%Y-%m-%d %H:%M:%S})"


def _retract_command(uri: str) -> str:
    """The command that takes the upload ``uri`` back: quoted for the shell, and `$` doubled for make,
    which expands its variables, so it pastes as printed."""
    return f"make retract URI={shlex.quote(uri.replace('$', '$$'))} REASON='<why>'"
