"""MNI152 anatomy for the phantom: T2-looking axial slices and the masks lesions are placed on.

The ICBM152 2009a templates ship inside the nilearn wheel (``nilearn/datasets/data``), so nothing
is downloaded. The T1 template is skull-stripped, so the head around the brain (subarachnoid CSF,
skull, scalp) is synthesised here from the distance to the intracranial boundary.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
# Square field of view: the head (brain, skull, scalp) fills most of it, as in clinical slices.
FIELD_OF_VIEW_MM = 220
# Axial levels (MNI z, mm) drawn from: from the temporal lobes over the ventricles to the high
# convexity; lower slices show a skull base the synthetic skull cannot imitate.
AXIAL_LEVELS_MM = tuple(range(-12, 63, 3))
# The skull-stripped brain is closed and grown by this much to get the inner table of the skull;
# the grown margin is the subarachnoid CSF that lines the brain.
_SULCAL_CLOSING_MM = 6
_SUBARACHNOID_MM = 2.0
# The averaged template blurs sulci into grey matter; raising CSF fractions to this power (< 1)
# brings back the bright sulcal lines of a single subject's T2.
_SULCAL_CSF_GAMMA = 0.6
# Half width (mm) of the CSF-filled interhemispheric fissure around the falx.
_FISSURE_HALF_WIDTH_MM = 1.5
# The falx hangs above an arch over the corpus callosum (MNI mm): absent below the arch, it runs
# from the frontal pole to the occiput above it. Centre, half length and height of the arch.
_FALX_ARCH_CENTRE_Y_MM = -5.0
_FALX_ARCH_HALF_LENGTH_MM = 55.0
_FALX_ARCH_BASE_Z_MM = -15.0
_FALX_ARCH_HEIGHT_MM = 50.0
# Depth profile of the head outside the inner table (mm): bone, diploic marrow, bone, galea,
# subcutaneous fat, skin. Depths are scaled per direction (the skull is thicker front and back).
_SHELL_DEPTHS_MM = (0.0, 1.2, 1.7, 4.0, 4.5, 5.6, 6.1, 6.9, 7.4, 10.4, 10.9, 11.8, 12.4)
_SHELL_TISSUES = (
    "bone",
    "bone",
    "marrow",
    "marrow",
    "bone",
    "bone",
    "galea",
    "galea",
    "fat",
    "fat",
    "skin",
    "skin",
    "background",
)


class TemplateNotFoundError(FileNotFoundError):
    """The MNI152 templates are missing: nilearn (which ships them) is not installed."""


@dataclass(frozen=True)
class TissueContrast:
    """T2-weighted signal of each tissue, relative to CSF near 1."""

    csf: float = 1.0
    grey: float = 0.52
    white: float = 0.36
    # Dura mater and falx: dense collagen, dark on T2.
    dura: float = 0.12
    # Cortical bone (inner and outer tables): no signal.
    bone: float = 0.04
    # Diploic marrow between the tables: fatty, intermediate.
    marrow: float = 0.34
    # Galea and muscle under the fat: dark-intermediate.
    galea: float = 0.16
    # Subcutaneous fat: bright on fast spin echo T2.
    fat: float = 0.72
    skin: float = 0.38
    background: float = 0.0


@dataclass(frozen=True, eq=False)
class SliceAnatomy:
    """One axial level resampled to ``size`` x ``size``; rows run anterior to posterior."""

    # MNI z of the slice, mm.
    level_mm: int
    # Pixels per millimetre (``size / FIELD_OF_VIEW_MM``).
    px_per_mm: float
    # Grey matter, white matter and CSF fractions; they sum to 1 inside the skull.
    grey: np.ndarray
    white: np.ndarray
    csf: np.ndarray
    # Intracranial space (brain + CSF, inside the dura): soft edge in [0, 1] and its binary mask.
    intracranial_soft: np.ndarray
    intracranial: np.ndarray
    # Brain parenchyma (the template's brain mask).
    brain: np.ndarray
    # Inner table of the skull: the one-pixel edge of ``intracranial``.
    inner_table: np.ndarray
    # Falx cerebri: one pixel wide line on the midline, where the level reaches above its arch.
    falx: np.ndarray
    # Where extra-axial lesions attach: ``inner_table | falx``.
    dura: np.ndarray
    # Distance (pixels) to the nearest dura pixel, to keep intra-axial lesions off it.
    distance_to_dura: np.ndarray
    # Depth (pixels) inside the intracranial space; its gradient points away from the skull.
    depth: np.ndarray
    # Direction-scaled depth (mm) outside the inner table, indexing the skull/scalp profile.
    shell_depth_mm: np.ndarray
    # Column of the midline.
    midline_col: int


def template_dir() -> Path:
    """Folder of the MNI152 templates inside the installed nilearn package.

    Found without importing nilearn (its import is slow and not needed to read three files).

    :raises TemplateNotFoundError: nilearn is not installed or its wheel lacks the templates.
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise TemplateNotFoundError(
            "The phantom needs the MNI152 templates shipped inside the nilearn package: "
            "install it (pip install nilearn==0.10.4)."
        )
    directory = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [name for name in TEMPLATE_FILES.values() if not (directory / name).is_file()]
    if missing:
        raise TemplateNotFoundError(
            f"{directory} lacks {missing}; reinstall nilearn (pip install nilearn==0.10.4), "
            "whose wheel ships the MNI152 templates."
        )
    return directory


@dataclass(frozen=True, eq=False)
class _Templates:
    brain: np.ndarray  # bool (x, y, z)
    grey: np.ndarray  # uint8 probability * 255
    white: np.ndarray
    origin_mm: tuple[float, float, float]


@lru_cache(maxsize=1)
def _load_templates() -> _Templates:
    """Read the three volumes once; uint8 in memory (26 MB rather than 100 MB as floats)."""
    directory = template_dir()
    images = {key: nib.load(directory / name) for key, name in TEMPLATE_FILES.items()}
    affine = images["t1"].affine
    # Axis-aligned 1 mm grid, which the slicing below relies on.
    if not np.allclose(affine[:3, :3], np.eye(3)):
        raise TemplateNotFoundError(f"Unexpected MNI152 template grid in {directory}: {affine.tolist()}")
    volumes = {key: np.asarray(image.dataobj, dtype=np.uint8) for key, image in images.items()}
    return _Templates(
        brain=volumes["t1"] > 0,
        grey=volumes["gm"],
        white=volumes["wm"],
        origin_mm=tuple(float(value) for value in affine[:3, 3]),
    )


def _fov_offset(extent_mm: int) -> int:
    """Where a template axis starts in the field of view: < 0 crops (the brain sits well inside)."""
    return (FIELD_OF_VIEW_MM - extent_mm) // 2


def _to_fov(axis_values: np.ndarray, axis: int) -> np.ndarray:
    """Centre one axis of a plane in the field of view, padding with zeros or cropping."""
    offset = _fov_offset(axis_values.shape[axis])
    source = np.arange(FIELD_OF_VIEW_MM) - offset
    inside = (source >= 0) & (source < axis_values.shape[axis])
    taken = np.take(axis_values, np.clip(source, 0, axis_values.shape[axis] - 1), axis=axis)
    shape = [1, 1]
    shape[axis] = FIELD_OF_VIEW_MM
    return np.where(inside.reshape(shape), taken, 0)


def _axial(volume: np.ndarray, z_index: int) -> np.ndarray:
    """Axial slice with anterior at the top, centred in the field of view."""
    plane = np.rot90(volume[:, :, z_index])
    return _to_fov(_to_fov(plane, 0), 1)


def _resize(plane: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a float plane to ``size`` x ``size`` (PIL keeps pixel centres aligned)."""
    image = Image.fromarray(plane.astype(np.float32))
    return np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.float32)


def _disk(radius: int) -> np.ndarray:
    """Boolean disk structuring element of ``radius`` pixels."""
    grid = np.arange(-radius, radius + 1)
    return grid[:, None] ** 2 + grid[None, :] ** 2 <= radius**2


def _intracranial_native(brain: np.ndarray) -> np.ndarray:
    """Inner-table outline at 1 mm: the brain with sulci and ventricles filled, grown, smoothed."""
    # Padding first: closing erodes back from the array border otherwise.
    margin = _SULCAL_CLOSING_MM + 1
    closed = ndimage.binary_closing(np.pad(brain, margin), structure=_disk(_SULCAL_CLOSING_MM))
    closed = closed[margin:-margin, margin:-margin]
    filled = ndimage.binary_fill_holes(closed)
    grown = ndimage.distance_transform_edt(~filled) <= _SUBARACHNOID_MM
    # A smooth outline: the inner table has no corners.
    return ndimage.gaussian_filter(grown.astype(np.float32), 2.0)


def _falx(intracranial: np.ndarray, level_mm: int, row_y_mm: np.ndarray, midline_col: int) -> np.ndarray:
    """Midline pixels of the falx: inside the skull wherever the level is above the falx's arch."""
    offset = (row_y_mm - _FALX_ARCH_CENTRE_Y_MM) / _FALX_ARCH_HALF_LENGTH_MM
    arch_z = _FALX_ARCH_BASE_Z_MM + _FALX_ARCH_HEIGHT_MM * np.sqrt(np.clip(1.0 - offset**2, 0.0, None))
    falx = np.zeros_like(intracranial)
    falx[:, midline_col] = intracranial[:, midline_col] & (level_mm > arch_z)
    return falx


def _tissue_fractions(
    grey: np.ndarray, white: np.ndarray, falx: np.ndarray, px_per_mm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grey, white and CSF fractions with sharpened sulci and a CSF-filled fissure along the falx."""
    csf = np.clip(1.0 - grey - white, 0.0, 1.0) ** _SULCAL_CSF_GAMMA
    fissure_sigma = _FISSURE_HALF_WIDTH_MM * px_per_mm
    fissure = ndimage.gaussian_filter(falx.astype(np.float32), fissure_sigma) * 2.5 * fissure_sigma
    csf = np.maximum(csf, np.clip(fissure, 0.0, 1.0))
    # Grey and white share what CSF leaves, in their original proportion.
    tissue = grey + white
    share = np.where(tissue > 1e-3, (1.0 - csf) / np.maximum(tissue, 1e-3), 0.0)
    return (grey * share).astype(np.float32), (white * share).astype(np.float32), csf.astype(np.float32)


def _shell_depth_mm(intracranial: np.ndarray, px_per_mm: float) -> np.ndarray:
    """Distance outside the inner table in mm, shrunk at the sides where the skull is thinner."""
    outside_mm = ndimage.distance_transform_edt(~intracranial) / px_per_mm
    rows, cols = np.nonzero(intracranial)
    grid_rows, grid_cols = np.indices(intracranial.shape)
    angle = np.arctan2(grid_cols - cols.mean(), grid_rows - rows.mean())
    # Frontal and occipital bone is thicker than the temporal squama.
    thickness = 0.8 + 0.35 * np.cos(angle) ** 2
    return (outside_mm / thickness).astype(np.float32)


# Room for every level at two sizes: a level costs about 2 MB at 256 pixels.
@lru_cache(maxsize=2 * len(AXIAL_LEVELS_MM))
def slice_anatomy(level_mm: int, size: int) -> SliceAnatomy:
    """The anatomy of one axial level at ``size`` x ``size`` pixels, computed once and cached.

    :param level_mm: MNI z of the slice in mm, one of :data:`AXIAL_LEVELS_MM` (others work too).
    :param size: output width and height in pixels.
    """
    templates = _load_templates()
    z_index = int(round(level_mm - templates.origin_mm[2]))
    px_per_mm = size / FIELD_OF_VIEW_MM
    grey = np.clip(_resize(_axial(templates.grey, z_index) / 255.0, size), 0.0, 1.0)
    white = np.clip(_resize(_axial(templates.white, z_index) / 255.0, size), 0.0, 1.0)
    brain_native = _axial(templates.brain, z_index)
    intracranial_soft = np.clip(_resize(_intracranial_native(brain_native), size), 0.0, 1.0)
    intracranial = intracranial_soft > 0.5

    # Field-of-view row r holds template y index (ny - 1 - (r - offset)); map output rows back.
    ny = templates.brain.shape[1]
    native_rows = (np.arange(size) + 0.5) / px_per_mm - 0.5
    row_y_mm = templates.origin_mm[1] + (ny - 1 - (native_rows - _fov_offset(ny)))
    midline_native = _fov_offset(templates.brain.shape[0]) - templates.origin_mm[0]  # MNI x = 0
    midline_col = int(round((midline_native + 0.5) * px_per_mm - 0.5))
    falx = _falx(intracranial, level_mm, row_y_mm, midline_col)

    inner_table = intracranial & ~ndimage.binary_erosion(intracranial)
    dura = inner_table | falx
    grey, white, csf = _tissue_fractions(grey, white, falx, px_per_mm)
    anatomy = SliceAnatomy(
        level_mm=level_mm,
        px_per_mm=px_per_mm,
        grey=grey,
        white=white,
        csf=csf,
        intracranial_soft=intracranial_soft,
        intracranial=intracranial,
        brain=_resize(brain_native.astype(np.float32), size) > 0.5,
        inner_table=inner_table,
        falx=falx,
        dura=dura,
        distance_to_dura=ndimage.distance_transform_edt(~dura).astype(np.float32),
        depth=ndimage.distance_transform_edt(intracranial).astype(np.float32),
        shell_depth_mm=_shell_depth_mm(intracranial, px_per_mm),
        midline_col=midline_col,
    )
    # Cached and shared by every sample: read-only, so no painter can alter it in place.
    for value in vars(anatomy).values():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
    return anatomy


def sample_contrast(rng: np.random.Generator, jitter: float = 0.08) -> TissueContrast:
    """Tissue signals varied per scan (sequence, field strength): each scaled by 1 +- ``jitter``.

    :param rng: the sample's random generator.
    :param jitter: relative spread of every tissue's signal.
    """
    base = TissueContrast()
    values = {
        name: getattr(base, name) * float(rng.uniform(1.0 - jitter, 1.0 + jitter))
        for name in ("csf", "grey", "white", "dura", "bone", "marrow", "galea", "fat", "skin")
    }
    # Keep grey above white whatever the draw: the defining T2 grey/white order.
    values["white"] = min(values["white"], values["grey"] * 0.85)
    return TissueContrast(**values)


def render_intracranial(anatomy: SliceAnatomy, contrast: TissueContrast) -> np.ndarray:
    """Signal inside the skull: CSF, grey and white matter mixed by their fractions.

    Kept apart from the skull so lesions can push the brain aside without bending the bone.

    :param anatomy: the slice.
    :param contrast: the tissue signals.
    """
    return contrast.csf * anatomy.csf + contrast.grey * anatomy.grey + contrast.white * anatomy.white


def compose_head(anatomy: SliceAnatomy, intracranial_signal: np.ndarray, contrast: TissueContrast) -> np.ndarray:
    """The full slice: ``intracranial_signal`` inside the inner table, skull and scalp around it.

    :param anatomy: the slice.
    :param intracranial_signal: output of :func:`render_intracranial`, possibly warped by a lesion.
    :param contrast: the tissue signals.
    """
    shell_values = [getattr(contrast, tissue) for tissue in _SHELL_TISSUES]
    shell = np.interp(anatomy.shell_depth_mm, _SHELL_DEPTHS_MM, shell_values).astype(np.float32)
    image = anatomy.intracranial_soft * intracranial_signal + (1.0 - anatomy.intracranial_soft) * shell
    image[anatomy.falx] = 0.3 * image[anatomy.falx] + 0.7 * contrast.dura
    return image
