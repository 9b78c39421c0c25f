"""One split of the registry as the DataFrames the suites validate, read in one transaction.

Read through the backend layer (``db.transaction()``, bound values) rather than a Great Expectations SQL data
source: GX 1.24 cannot validate DuckDB through SQLAlchemy (duckdb-engine 0.17 + duckdb 2.x fail
with ``MetricResolutionError``), so one path serves both backends (docs/architecture.md has the
measurements that chose it for Postgres as well).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from include.db import RegistryDatabase
from include.registry.snapshots import snapshot_id

log = logging.getLogger(__name__)

# The columns of a snapshot's rows, in this order (the schema expectation pins the set).
IMAGE_COLUMNS = ("content_hash", "label", "uri", "split", "width", "height", "mode")


@dataclass(frozen=True)
class SplitFrames:
    """What a gate run validates for one split.

    :param split: ``train`` or ``test``.
    :param snapshot_id: the name the snapshot of ``images`` would have (:func:`snapshot_id`).
    :param images: one row per registered image of the split, ``IMAGE_COLUMNS``.
    :param measures: one row of split-level measures (see :func:`split_measures`).
    :param class_counts: images per configured label (unknown labels are not counted).
    """

    split: str
    snapshot_id: str
    images: pd.DataFrame
    measures: pd.DataFrame
    class_counts: dict[str, int]


def read_split(db: RegistryDatabase, split: str, labels: tuple[str, ...]) -> SplitFrames:
    """Read the registered rows of ``split`` and the split-level facts, in one transaction.

    :param db: the registry database.
    :param split: ``train`` or ``test``.
    :param labels: the configured classes (MRI_LABELS).
    """
    p = db.placeholder
    with db.transaction() as cursor:
        cursor.execute(
            f"SELECT {', '.join(IMAGE_COLUMNS)} FROM images WHERE split = {p} AND status = 'registered' "
            "ORDER BY content_hash",
            (split,),
        )
        images = pd.DataFrame(cursor.fetchall(), columns=list(IMAGE_COLUMNS))
        cursor.execute(f"SELECT COUNT(*) FROM images WHERE split = {p} AND status = 'quarantined'", (split,))
        [(quarantined,)] = cursor.fetchall()
        # A leaked content is in both splits by definition, so every leak concerns this split.
        cursor.execute("SELECT COUNT(*), MIN(example_uri) FROM leaked_images")
        [(leaked, leak_example)] = cursor.fetchall()
        conflicts = _label_conflicts(cursor, p, split)
    # Sorting with None labels never compares them: content hashes are unique in `images`.
    name = snapshot_id([(h, str(label)) for h, label in zip(images["content_hash"], images["label"], strict=True)])
    counts = {label: int(n) for label, n in images["label"].value_counts().items() if label in labels}
    counts = {label: counts.get(label, 0) for label in labels}
    measures = split_measures(counts, len(images), int(quarantined), int(leaked), leak_example, conflicts)
    log.info("%s: %s registered images %s, snapshot %s", split, len(images), counts, name[:12])
    return SplitFrames(split, name, images, measures, counts)


def split_measures(
    counts: dict[str, int],
    registered: int,
    quarantined: int,
    leaked: int,
    leak_example: str | None,
    conflicts: list[str],
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
                "leaked_contents": leaked,
                "leak_example": leak_example,
                "label_conflicts": len(conflicts),
                "conflict_example": min(conflicts) if conflicts else None,
            }
        ]
    )


def _label_conflicts(cursor: Any, p: str, split: str) -> list[str]:
    """Content hashes of this split's files registered with two different labels (view
    ``label_conflicts`` of migration 0004, over the label each file carried)."""
    cursor.execute(
        "SELECT DISTINCT content_hash FROM label_conflicts "
        f"WHERE content_hash IN (SELECT content_hash FROM image_files WHERE split = {p})",
        (split,),
    )
    return sorted(h for (h,) in cursor.fetchall())
