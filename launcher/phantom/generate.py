"""Render phantom slices and write them as a Kaggle-style labelled dataset.

Every image has its own ``numpy.random.Generator`` seeded from (seed, lesion kind, sample index),
so a sample is the same whatever else is generated and in whatever order: same config, same bytes.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from launcher.phantom.anatomy import AXIAL_LEVELS_MM, sample_contrast, slice_anatomy
from launcher.phantom.lesions import LESION_PAINTERS, Painter

SPLITS = ("train", "test")
IMAGE_FORMATS = ("jpg", "png")
# Columns of manifest.csv: the file, its class and split, then how it was generated.
# Lesion columns a kind does not use (dural tail for gliomas, necrosis for meningiomas) stay empty.
MANIFEST_COLUMNS = (
    "file",
    "label",
    "split",
    "number",
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
    # Share of each class written to test/ (rounded per class); the rest goes to train/.
    test_fraction: float = 0.25
    # Master seed of every random choice.
    seed: int = 0
    # Width and height of the square images, pixels.
    size: int = 256
    # "jpg" like the public Kaggle set, or lossless "png".
    image_format: str = "jpg"
    # 0 = large, bright lesions on clean images; 1 = small, faint lesions on noisy images.
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
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.size < 64:
            raise ValueError(f"size must be >= 64 pixels, got {self.size}")
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {self.image_format!r}")
        if not 0.0 <= self.difficulty <= 1.0:
            raise ValueError(f"difficulty must be in [0, 1], got {self.difficulty}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in [1, 95], got {self.jpeg_quality}")

    @property
    def test_count(self) -> int:
        """Images per class in test/ (half rounds up)."""
        return math.floor(self.per_class * self.test_fraction + 0.5)


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


def sample_rng(seed: int, label: str, sample_index: int) -> np.random.Generator:
    """The random generator of one image, independent of every other image.

    :param seed: the master seed.
    :param label: the class (a supported lesion kind).
    :param sample_index: 0-based index of the image within its class.
    """
    painter_for(label)
    kind_id = sorted(LESION_PAINTERS).index(label)
    return np.random.default_rng(np.random.SeedSequence([seed, kind_id, sample_index]))


def _reposition(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    """Patient positioning: slight rotation, zoom and shift, applied to image and mask alike.

    :param image: the painted slice.
    :param mask: its lesion mask.
    :param rng: the sample's random generator.
    :returns: the moved image and mask, the 2 x 3 matrix taking an input (row, col, 1) to its
        output position, and the pose drawn.
    """
    size = image.shape[0]
    pose = {
        "rotation_deg": rng.uniform(-10.0, 10.0),
        "zoom": rng.uniform(0.92, 1.08),
        "shift_row": rng.uniform(-0.04, 0.04) * size,
        "shift_col": rng.uniform(-0.04, 0.04) * size,
    }
    angle = np.deg2rad(pose["rotation_deg"])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.full(2, (size - 1) / 2.0)
    shift = np.array([pose["shift_row"], pose["shift_col"]])
    forward = pose["zoom"] * rotation
    forward_offset = centre + shift - forward @ centre
    # affine_transform pulls: it needs the output -> input mapping, the inverse of ``forward``.
    inverse = np.linalg.inv(forward)
    inverse_offset = -inverse @ forward_offset
    moved = ndimage.affine_transform(image, inverse, inverse_offset, order=1, mode="constant")
    moved_mask = ndimage.affine_transform(mask.astype(np.float32), inverse, inverse_offset, order=1) > 0.5
    return moved, moved_mask, np.hstack([forward, forward_offset[:, None]]), pose


def _bias_field(size: int, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative coil shading: exp of a random quadratic surface over the image."""
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    rows, cols = np.meshgrid(axis, axis, indexing="ij")
    terms = np.stack([rows, cols, rows * cols, rows**2 - 1 / 3, cols**2 - 1 / 3])
    coefficients = rng.normal(0.0, 1.0, len(terms)).astype(np.float32)
    surface = np.tensordot(coefficients, terms, axes=1)
    return np.exp(strength * surface / max(float(np.abs(surface).max()), 1e-6))


def _scanner_effects(
    image: np.ndarray, rng: np.random.Generator, difficulty: float
) -> tuple[np.ndarray, dict[str, float]]:
    """Acquisition: finite resolution, receive-coil shading, gain, and Rician magnitude noise.

    :param image: the repositioned slice, CSF near 1.
    :param rng: the sample's random generator.
    :param difficulty: raises the noise and the shading.
    :returns: the acquired image and the effects drawn.
    """
    effects = {
        "blur_px": rng.uniform(0.3, 0.9),
        "bias_strength": rng.uniform(0.0, 0.15 + 0.2 * difficulty),
        "intensity_scale": rng.uniform(0.8, 1.0),
        "noise_sigma": rng.uniform(0.7, 1.3) * (0.012 + 0.04 * difficulty),
    }
    image = ndimage.gaussian_filter(image, effects["blur_px"])
    image = image * _bias_field(image.shape[0], effects["bias_strength"], rng) * effects["intensity_scale"]
    # Magnitude images: noise on the real and imaginary channels, then the modulus (Rician),
    # which is why the background is not black but a dim speckle.
    real = image + rng.normal(0.0, effects["noise_sigma"], image.shape)
    imaginary = rng.normal(0.0, effects["noise_sigma"], image.shape)
    return np.hypot(real, imaginary), effects


def render_sample(
    label: str, rng_or_seed: np.random.Generator | int, config: PhantomConfig = PhantomConfig()
) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """One phantom slice of class ``label`` with its lesion mask.

    :param label: a supported lesion kind ("glioma" or "meningioma").
    :param rng_or_seed: the sample's generator, or an int seed for a fresh one.
    :param config: size and difficulty are used.
    :returns: (uint8 image ``size`` x ``size``, bool lesion mask aligned with it, parameters drawn;
        the lesion centre is in output pixel coordinates).
    :raises ValueError: the label is not a supported lesion kind.
    """
    painter = painter_for(label)
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(rng_or_seed)
    level_mm = int(rng.choice(AXIAL_LEVELS_MM))
    anatomy = slice_anatomy(level_mm, config.size)
    image, mask, lesion = painter(anatomy, sample_contrast(rng), rng, config.difficulty)
    image, mask, forward, pose = _reposition(image, mask, rng)
    image, effects = _scanner_effects(image, rng, config.difficulty)
    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    centre = forward @ np.array([lesion["centre_row"], lesion["centre_col"], 1.0])
    params = {
        "label": label,
        "difficulty": config.difficulty,
        "level_mm": level_mm,
        **lesion,
        "centre_row": float(centre[0]),
        "centre_col": float(centre[1]),
        **pose,
        **effects,
    }
    return pixels, mask, params


def _format(value: object) -> str:
    """CSV text of a value; floats rounded so the manifest is stable and readable."""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _clear_stale_images(split_dir: Path, labels: tuple[str, ...]) -> None:
    """Remove images a previous, larger run left behind, so every file belongs to this run."""
    for label in labels:
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
    """Write ``train/<label> (N).<ext>``, ``test/<label> (N).<ext>`` and ``manifest.csv``.

    File names follow the public Kaggle brain-tumour set (``glioma (12).jpg``), numbered from 1
    per label and split. The first ``per_class - test_count`` samples of a class go to train/.

    :param out_dir: dataset root; created if missing. Images of these labels already there are replaced.
    :param config: what to generate.
    :returns: ``out_dir`` as a Path (the manifest is ``out_dir / "manifest.csv"``).
    """
    out_dir = Path(out_dir)
    for split in SPLITS:
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        _clear_stale_images(out_dir / split, config.labels)
    train_count = config.per_class - config.test_count
    rows = []
    for label in config.labels:
        for sample_index in range(config.per_class):
            split = "train" if sample_index < train_count else "test"
            number = sample_index + 1 if split == "train" else sample_index - train_count + 1
            file = f"{split}/{label} ({number}).{config.image_format}"
            pixels, _, params = render_sample(label, sample_rng(config.seed, label, sample_index), config)
            _save(pixels, out_dir / file, config)
            identity = {"file": file, "split": split, "number": number, "seed": config.seed}
            rows.append({**params, **identity, "sample_index": sample_index})
    manifest = out_dir / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, restval="", lineterminator="\n")
        writer.writeheader()
        for row in sorted(rows, key=lambda row: (SPLITS.index(row["split"]), row["label"], row["number"])):
            writer.writerow({column: _format(row[column]) for column in MANIFEST_COLUMNS if column in row})
    return out_dir
