"""Render phantom subjects and write them as a Kaggle-style labelled dataset with a labels CSV.

A subject (one head, scanner session and tumour; see ``subjects``) and each of its slices have their
own ``numpy.random.Generator``, seeded from (seed, lesion kind, subject index, stream), so a slice
is the same whatever else is generated and in whatever order: same config, same bytes.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from launcher.phantom.anatomy import AXIAL_LEVELS_MM, slice_anatomy
from launcher.phantom.lesions import LESION_PAINTERS, Painter
from launcher.phantom.subjects import Subject, acquire, draw_subject, place

SPLITS = ("train", "test")
IMAGE_FORMATS = ("jpg", "png")
# The labels CSV the pipeline reads (``MRI_LABELS_CSV``): each file's path, class and subject.
LABELS_CSV_COLUMNS = ("file", "label", "subject")
# Columns of manifest.csv: the file, its class, split and subject, then how it was generated.
# Lesion columns a kind does not use (dural tail for gliomas, necrosis for meningiomas) stay empty;
# the columns from rotation_deg on are the subject's, the same in each of its rows.
MANIFEST_COLUMNS = (
    "file",
    "label",
    "split",
    "number",
    "subject",
    "slice",
    "seed",
    "sample_index",
    "difficulty",
    "level_mm",
    "site",
    "centre_row",
    "centre_col",
    "radius_mm",
    "lesion_contrast",
    "mass_effect",
    "dural_tail",
    "necrosis_fraction",
    "edema_extent_mm",
    "rotation_deg",
    "zoom",
    "shift_row",
    "shift_col",
    "scale_row",
    "scale_col",
    "intensity_scale",
    "bias_strength",
    "blur_px",
    "noise_sigma",
)


@dataclass(frozen=True)
class PhantomConfig:
    """What to generate; with the same values, :func:`generate_dataset` writes the same bytes."""

    # Class names, each drawn by the lesion painter of that name (see ``LESION_PAINTERS``).
    labels: tuple[str, ...] = ("glioma", "meningioma")
    # Images per class, train and test together.
    per_class: int = 330
    # Slices of one subject (neighbouring levels of one head); a class's last subject may have fewer.
    slices_per_subject: int = 5
    # Share of each class's subjects written to test/ (rounded, at least one on each side); a
    # subject's slices all go to one split.
    test_fraction: float = 0.25
    # Master seed of every random choice.
    seed: int = 0
    # Width and height of the square images, pixels.
    size: int = 256
    # "jpg" like the public Kaggle set, or lossless "png".
    image_format: str = "jpg"
    # 0 = large, bright lesions on clean images; 1 = small, faint lesions on noisy, shaded images.
    difficulty: float = 0.5
    # JPEG quality 1-95 (ignored for png).
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        for label in self.labels:
            painter_for(label)
        if len(set(self.labels)) != len(self.labels) or not self.labels:
            raise ValueError(f"labels must be distinct and non-empty, got {self.labels}")
        if self.per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {self.per_class}")
        if not 1 <= self.slices_per_subject <= len(AXIAL_LEVELS_MM):
            raise ValueError(
                f"slices_per_subject must be in [1, {len(AXIAL_LEVELS_MM)}] (one per axial level), "
                f"got {self.slices_per_subject}"
            )
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.test_fraction > 0 and self.subjects_per_class < 2:
            raise ValueError(
                f"per_class={self.per_class} with slices_per_subject={self.slices_per_subject} makes one "
                "subject per class, which cannot be in both splits: raise per_class or lower slices_per_subject"
            )
        if self.size < 64:
            raise ValueError(f"size must be >= 64 pixels, got {self.size}")
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {self.image_format!r}")
        if not 0.0 <= self.difficulty <= 1.0:
            raise ValueError(f"difficulty must be in [0, 1], got {self.difficulty}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in [1, 95], got {self.jpeg_quality}")

    @property
    def subjects_per_class(self) -> int:
        return math.ceil(self.per_class / self.slices_per_subject)

    @property
    def test_subjects(self) -> int:
        """Subjects per class in test/ (half rounds up; at least one, and one left for train/)."""
        if self.test_fraction == 0:
            return 0
        wanted = math.floor(self.subjects_per_class * self.test_fraction + 0.5)
        return min(max(wanted, 1), self.subjects_per_class - 1)

    @property
    def train_count(self) -> int:
        """Images per class in train/: the slices of the first subjects (the last, partial one goes to
        test/ unless test/ has none)."""
        return min(self.per_class, (self.subjects_per_class - self.test_subjects) * self.slices_per_subject)

    def slices_of(self, subject_index: int) -> int:
        """How many slices subject ``subject_index`` (0-based, per class) has."""
        return min(self.slices_per_subject, self.per_class - subject_index * self.slices_per_subject)

    def subject_id(self, label: str, subject_index: int) -> str:
        """``sub-001``...: numbered over all classes in ``labels`` order, so the numbers run in blocks
        of a class (train subjects first); the pipeline only hashes them (holdout) and compares them
        (gate), and a model never sees them. They depend on ``per_class``, as the split does."""
        number = self.labels.index(label) * self.subjects_per_class + subject_index + 1
        return f"sub-{number:0{max(3, len(str(len(self.labels) * self.subjects_per_class)))}d}"


def painter_for(label: str) -> Painter:
    """The painter that draws ``label``.

    :param label: a class name.
    :raises ValueError: the generator cannot draw this kind of lesion.
    """
    try:
        return LESION_PAINTERS[label]
    except KeyError:
        raise ValueError(
            f"The phantom generator cannot draw {label!r}: supported lesion kinds are "
            f"{sorted(LESION_PAINTERS)}. Other classes need real images."
        ) from None


def make_subject(label: str, subject_index: int, config: PhantomConfig = PhantomConfig()) -> Subject:
    """Subject ``subject_index`` (0-based) of class ``label``: the same whatever else is generated.

    :raises ValueError: the label is not a supported lesion kind.
    """
    painter_for(label)
    return draw_subject(
        config.subject_id(label, subject_index),
        label,
        config.slices_of(subject_index),
        config.size,
        config.difficulty,
        (config.seed, sorted(LESION_PAINTERS).index(label), subject_index),
    )


def render_slice(
    subject: Subject, slice_index: int, config: PhantomConfig = PhantomConfig()
) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """Slice ``slice_index`` of ``subject`` with its lesion mask.

    :param subject: from :func:`make_subject`.
    :param slice_index: 0-based, below ``len(subject.levels)``.
    :param config: size and difficulty are used (the seed is the subject's).
    :returns: (uint8 image ``size`` x ``size``, bool lesion mask aligned with it, parameters drawn;
        the lesion centre is in output pixel coordinates).
    """
    rng = np.random.default_rng(np.random.SeedSequence([*subject.seed, 1 + slice_index]))
    level_mm = subject.levels[slice_index]
    anatomy = slice_anatomy(level_mm, config.size)
    # The same tumour looks a little brighter or fainter from one slice to the next.
    lesion_contrast = subject.lesion_contrast * rng.uniform(0.9, 1.1)
    painter = painter_for(subject.label)
    image, mask, lesion = painter(anatomy, subject.contrast, rng, config.difficulty, lesion_contrast)
    image, mask, centre = place(subject, image, mask, np.array([lesion["centre_row"], lesion["centre_col"]]))
    image = acquire(subject, image, rng)
    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    params = {
        "label": subject.label,
        "slice": slice_index,
        "difficulty": config.difficulty,
        "level_mm": level_mm,
        **lesion,
        "centre_row": float(centre[0]),
        "centre_col": float(centre[1]),
        **subject.params(),
    }
    return pixels, mask, params


def _format(value: object) -> str:
    """CSV text of a value; floats rounded so the manifest is stable and readable."""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _clear_stale_images(split_dir: Path) -> None:
    """Remove images a previous run left behind (a larger one, or one of other labels), so every
    file belongs to this run."""
    for label in LESION_PAINTERS:
        for extension in IMAGE_FORMATS:
            for path in split_dir.glob(f"{label} (*).{extension}"):
                path.unlink()


def _save(pixels: np.ndarray, path: Path, config: PhantomConfig) -> None:
    image = Image.fromarray(pixels)
    if config.image_format == "jpg":
        image.save(path, format="JPEG", quality=config.jpeg_quality)
    else:
        image.save(path, format="PNG")


def generate_dataset(out_dir: str | Path, config: PhantomConfig = PhantomConfig()) -> Path:
    """Write ``train/<label> (N).<ext>``, ``test/<label> (N).<ext>``, ``labels.csv`` and ``manifest.csv``.

    File names follow the public Kaggle brain-tumour set (``glioma (12).jpg``), numbered from 1
    per label and split. A class's first subjects go to train/, the last ``test_subjects`` to
    test/ (so the split, like the subject ids, depends on ``per_class``). ``labels.csv``
    (``file,label,subject``, the file as ``<split>/<name>``) is what ``MRI_LABELS_CSV`` reads when
    the images are uploaded flat into ``landing/<split>/``.

    :param out_dir: dataset root; created if missing. Phantom images already there are replaced.
    :param config: what to generate.
    :returns: ``out_dir`` as a Path.
    """
    out_dir = Path(out_dir)
    # Written last: a set without it is incomplete (the demo makes it again).
    (out_dir / "labels.csv").unlink(missing_ok=True)
    for split in SPLITS:
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        _clear_stale_images(out_dir / split)
    rows = []
    for label in config.labels:
        numbers = dict.fromkeys(SPLITS, 0)
        for subject_index in range(config.subjects_per_class):
            subject = make_subject(label, subject_index, config)
            split = SPLITS[subject_index >= config.subjects_per_class - config.test_subjects]
            for slice_index in range(len(subject.levels)):
                numbers[split] += 1
                file = f"{split}/{label} ({numbers[split]}).{config.image_format}"
                pixels, _, params = render_slice(subject, slice_index, config)
                _save(pixels, out_dir / file, config)
                sample_index = subject_index * config.slices_per_subject + slice_index
                identity = {"file": file, "split": split, "number": numbers[split], "seed": config.seed}
                rows.append({**params, **identity, "sample_index": sample_index})
    rows.sort(key=lambda row: (SPLITS.index(row["split"]), row["label"], row["number"]))
    for name, columns in (("manifest.csv", MANIFEST_COLUMNS), ("labels.csv", LABELS_CSV_COLUMNS)):
        with (out_dir / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, restval="", lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({column: _format(row[column]) for column in columns if column in row})
    return out_dir
