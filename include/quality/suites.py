"""The expectations of the gate, from the thresholds in ``include.config`` (imported at run time).

Two suites per split: ``images_<split>`` over the snapshot's rows (one per image) and
``split_<split>`` over the one row of split-level measures (``include.quality.frames``). Each
expectation carries a description naming the setting behind its threshold: the Data Docs page and
the gate's failure message show it.
"""

from __future__ import annotations

from typing import Any

from include.config import Settings
from include.quality.frames import IMAGE_COLUMNS

# Columns that identify an image and that a snapshot is named by: none may be missing.
KEY_COLUMNS = ("content_hash", "label", "uri")
# Columns the model needs to read an image the way it was measured.
SHAPE_COLUMNS = ("width", "height", "mode")


def suite_names(split: str) -> dict[str, str]:
    """The suite of each frame of ``split``: ``{"images": ..., "measures": ...}``."""
    return {"images": f"images_{split}", "measures": f"split_{split}"}


def image_expectations(cfg: Settings) -> list[Any]:
    """Row-level expectations over a snapshot's rows."""
    import great_expectations.expectations as gxe

    sides = f"[MRI_QUALITY_MIN_SIDE={cfg.quality_min_side}, MRI_QUALITY_MAX_SIDE={cfg.quality_max_side}]"
    return [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=list(IMAGE_COLUMNS),
            exact_match=True,
            description=f"schema: the snapshot has exactly the columns {', '.join(IMAGE_COLUMNS)}",
        ),
        *(
            gxe.ExpectColumnValuesToNotBeNull(column=column, description=f"no image without a {column}")
            for column in (*KEY_COLUMNS, *SHAPE_COLUMNS)
        ),
        gxe.ExpectColumnValuesToBeUnique(
            column="content_hash", description="each content (SHA-256 of the bytes) once in the snapshot"
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="label",
            value_set=list(cfg.labels),
            description=f"every label is one of MRI_LABELS={','.join(cfg.labels)}",
        ),
        *(
            gxe.ExpectColumnValuesToBeBetween(
                column=column,
                min_value=cfg.quality_min_side,
                max_value=cfg.quality_max_side,
                description=f"{column} in {sides} pixels",
            )
            for column in ("width", "height")
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="mode",
            value_set=list(cfg.quality_modes),
            description=f"PIL mode one of MRI_QUALITY_MODES={','.join(cfg.quality_modes)}",
        ),
    ]


def measure_expectations(cfg: Settings) -> list[Any]:
    """Expectations over the one row of split-level measures: each observed value is the measure."""
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnMinToBeBetween(
            column="smallest_class_images",
            min_value=cfg.quality_min_images_per_class,
            description=(
                f"at least MRI_QUALITY_MIN_IMAGES_PER_CLASS={cfg.quality_min_images_per_class} images in every class"
            ),
        ),
        gxe.ExpectColumnMinToBeBetween(
            column="class_ratio",
            min_value=cfg.quality_min_class_ratio,
            description=(
                f"class balance: smallest class / largest class >= MRI_QUALITY_MIN_CLASS_RATIO="
                f"{cfg.quality_min_class_ratio}"
            ),
        ),
        gxe.ExpectColumnMaxToBeBetween(
            column="quarantine_rate",
            max_value=cfg.quality_max_quarantine_rate,
            description=(
                f"quarantined / all rows of the split <= MRI_QUALITY_MAX_QUARANTINE_RATE="
                f"{cfg.quality_max_quarantine_rate}"
            ),
        ),
        gxe.ExpectColumnMaxToBeBetween(
            column="leaked_contents",
            max_value=0,
            description="leakage: no pixels in both splits (view leaked_images, over files not retracted)",
        ),
        gxe.ExpectColumnMaxToBeBetween(
            column="label_conflicts",
            max_value=0,
            description="no pixels registered under two labels (view label_conflicts, over files not retracted)",
        ),
        gxe.ExpectColumnMaxToBeBetween(
            column="near_duplicates",
            max_value=0,
            description=(
                "no near-duplicates across splits: no image within MRI_QUALITY_NEAR_DUPLICATE_BITS="
                f"{cfg.quality_near_duplicate_bits} bits of the 256-bit perceptual hash of an image in the other "
                "split (a resized or re-compressed copy)"
            ),
        ),
        gxe.ExpectColumnMaxToBeBetween(
            column="leaked_subjects",
            max_value=0,
            description=(
                "no subject in both splits: a subject's registered files all in train or all in test (view "
                "leaked_subjects, over files not retracted; files without a subject are not judged)"
            ),
        ),
    ]
