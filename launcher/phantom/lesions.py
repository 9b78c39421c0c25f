"""Lesion painters: each draws one tumour type on an axial slice and returns what it drew.

* Meningioma: extra-axial. Attached to the dura (inner table of the skull or the falx), round and
  smooth, homogeneous, pushing the brain away; a CSF cleft and sometimes a dural tail.
* Glioma: intra-axial. Centred in white matter and kept off the dura, irregular margin, a bright
  rim around a darker necrotic core, and bright edema reaching along the white matter.

Each painter takes ``(anatomy, contrast, rng, difficulty, lesion_contrast)`` and returns a
:class:`PaintedLesion` ``(image, mask, params)``: the float image (CSF near 1), the lesion's pixels,
and what was drawn. ``difficulty`` in [0, 1] shrinks lesions; ``lesion_contrast`` is the tumour's
brightness over grey matter, the subject's (see ``subjects.LESION_CONTRAST_RANGE``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from launcher.phantom.anatomy import SliceAnatomy, TissueContrast, compose_head, render_intracranial

# Glioma masks keep at least this far from the dura (mm), so "intra-axial" holds with room to spare.
GLIOMA_DURA_MARGIN_MM = 3.0
# Share of meningiomas on the falx (parafalcine) rather than on the convexity, where a falx exists.
_FALX_SITE_PROBABILITY = 0.3


class PaintedLesion(NamedTuple):
    """A painted slice: float image, boolean lesion mask, and the drawing's parameters."""

    image: np.ndarray
    mask: np.ndarray
    params: dict[str, object]


class _RadialProfile(NamedTuple):
    """Outline radius as a function of angle: 1 + sum of a few random harmonics."""

    amplitudes: np.ndarray
    phases: np.ndarray
    harmonics: np.ndarray

    def at(self, angle: np.ndarray) -> np.ndarray:
        # Summed once on a fine table of angles and looked up: a per-pixel sum of harmonics
        # would dominate the cost of a sample.
        table_angles = np.linspace(-np.pi, np.pi, 1441)
        phases = self.harmonics[:, None] * table_angles + self.phases[:, None]
        waves = self.amplitudes[:, None] * np.cos(phases)
        return np.interp(angle, table_angles, 1.0 + waves.sum(axis=0)).astype(np.float32)

    @property
    def max_scale(self) -> float:
        """Upper bound of :meth:`at`, to know how far the outline can reach."""
        return 1.0 + float(np.abs(self.amplitudes).sum())


def _lerp(easy: float, hard: float, difficulty: float) -> float:
    """The value of a parameter at ``difficulty`` (0 = easy end, 1 = hard end)."""
    return easy + (hard - easy) * difficulty


def _radial_profile(rng: np.random.Generator, irregularity: float, harmonics: range) -> _RadialProfile:
    """Random outline: amplitude falls as 1/k so low harmonics shape it and high ones roughen it."""
    orders = np.arange(harmonics.start, harmonics.stop, dtype=np.float64)
    amplitudes = irregularity * rng.uniform(0.3, 1.0, orders.size) / orders
    phases = rng.uniform(0.0, 2.0 * np.pi, orders.size)
    return _RadialProfile(amplitudes, phases, orders)


def _polar(shape: tuple[int, int], centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (pixels) and angle of every pixel around ``centre`` (row, col)."""
    rows, cols = np.indices(shape, dtype=np.float32)
    d_row, d_col = rows - centre[0], cols - centre[1]
    return np.hypot(d_row, d_col), np.arctan2(d_row, d_col)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation (texture, blotches)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return field / max(float(field.std()), 1e-6)


def push_away(
    planes: list[np.ndarray],
    centre: np.ndarray,
    radius: float,
    strength: float,
    reach: float,
    region: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Mass effect: move tissue radially away from ``centre`` as if a ball of ``radius`` grew there.

    Tissue that was at ``radius * (1 - strength)`` ends at ``radius``; the displacement fades
    with distance beyond the ball over ``reach`` pixels. The mapping stays monotonic, so the
    brain is compressed, never folded.

    :param planes: images warped identically (signal, tissue fractions).
    :param centre: (row, col) of the ball.
    :param radius: ball radius, pixels.
    :param strength: share of the radius the surrounding tissue is pushed by, in [0, 1).
    :param reach: decay length of the displacement beyond the ball, pixels.
    :param region: pixels allowed to move (all if None); elsewhere the planes stay as they are.
    """
    shape = planes[0].shape
    distance, _ = _polar(shape, centre)
    source_distance = np.where(
        distance < radius,
        distance * (1.0 - strength),
        distance - strength * radius * np.exp(-(distance - radius) / reach),
    )
    ratio = source_distance / np.maximum(distance, 1e-6)
    rows, cols = np.indices(shape, dtype=np.float32)
    if region is not None:
        ratio = np.where(region, ratio, 1.0)
    coordinates = np.stack([centre[0] + (rows - centre[0]) * ratio, centre[1] + (cols - centre[1]) * ratio])
    return [ndimage.map_coordinates(plane, coordinates, order=1, mode="nearest") for plane in planes]


def _dural_attachment(anatomy: SliceAnatomy, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
    """Where a meningioma arises: site name, a dura pixel (row, col) and the unit vector into the brain."""
    falx_pixels = np.argwhere(anatomy.falx)
    if len(falx_pixels) and rng.random() < _FALX_SITE_PROBABILITY:
        anchor = falx_pixels[rng.integers(len(falx_pixels))].astype(np.float64)
        side = 1.0 if rng.random() < 0.5 else -1.0
        return "falx", anchor, np.array([0.0, side])
    inner_table = np.argwhere(anatomy.inner_table)
    anchor = inner_table[rng.integers(len(inner_table))]
    # The depth map rises away from the skull: its local slope is the inward normal.
    step = 3
    row, col = np.clip(anchor, step, np.array(anatomy.depth.shape) - step - 1)
    normal = np.array(
        [
            anatomy.depth[row + step, col] - anatomy.depth[row - step, col],
            anatomy.depth[row, col + step] - anatomy.depth[row, col - step],
        ]
    )
    return "convexity", anchor.astype(np.float64), normal / max(float(np.linalg.norm(normal)), 1e-6)


def _dural_tail(anatomy: SliceAnatomy, distance: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Weight of a dural tail: a thin band along the dura next to the tumour, tapering with distance."""
    length = radius * rng.uniform(0.5, 1.0)
    taper = np.clip(1.0 - (distance - radius) / length, 0.0, 1.0)
    thickness = rng.uniform(1.0, 2.0) * anatomy.px_per_mm * taper
    band = (anatomy.distance_to_dura <= thickness) & (taper > 0) & anatomy.intracranial
    return band.astype(np.float32) * taper


def paint_meningioma(
    anatomy: SliceAnatomy,
    contrast: TissueContrast,
    rng: np.random.Generator,
    difficulty: float,
    lesion_contrast: float,
) -> PaintedLesion:
    """A dural-based, well circumscribed, homogeneous mass compressing the adjacent brain.

    The mask always includes the dura pixel it grows from (inner table or falx).

    :param anatomy: the slice to paint on.
    :param contrast: the slice's tissue signals.
    :param rng: the sample's random generator.
    :param difficulty: 0 = large, 1 = small.
    :param lesion_contrast: the tumour's brightness over grey matter.
    """
    radius = rng.uniform(_lerp(12.0, 6.0, difficulty), _lerp(26.0, 13.0, difficulty)) * anatomy.px_per_mm
    site, anchor, inward = _dural_attachment(anatomy, rng)
    # Centre inside the brain by less than the radius: the ball cuts the dura, and clipping it to
    # the intracranial space leaves the broad flat base typical of meningiomas.
    centre = anchor + inward * radius * rng.uniform(0.45, 0.8)
    distance, angle = _polar(anatomy.intracranial.shape, centre)
    outline = radius * _radial_profile(rng, 0.12, range(2, 4)).at(angle)
    inside = anatomy.intracranial.copy()
    movable = None
    if site == "falx":
        # Parafalcine tumours stay on their side of the falx (the falx column itself included),
        # and the stiff falx shields the other hemisphere from their push.
        offset = (np.arange(inside.shape[1]) - anatomy.midline_col) * np.sign(inward[1])
        inside &= (offset >= 0)[None, :]
        movable = np.broadcast_to((offset > 0)[None, :], inside.shape)
    mask = (distance <= outline) & inside

    mass_effect = rng.uniform(0.3, 0.6)
    (signal,) = push_away([render_intracranial(anatomy, contrast)], centre, radius, mass_effect, 0.8 * radius, movable)
    image = compose_head(anatomy, signal, contrast)

    # CSF cleft: a thin bright rim between tumour and the compressed brain.
    beyond = distance - outline
    cleft = np.exp(-(((beyond - 1.0) / 1.0) ** 2)) * (beyond > 0) * anatomy.intracranial
    image += rng.uniform(0.3, 0.7) * cleft * (contrast.csf - image)

    # Fairly homogeneous: faint fine grain and broad patches, far from a glioma's blotches.
    texture = 0.035 * _smooth_noise(rng, image.shape, 1.2) + 0.04 * _smooth_noise(rng, image.shape, 4.0)
    tumour_signal = contrast.grey * (1.0 + lesion_contrast) * (1.0 + texture)
    has_tail = bool(rng.random() < 0.6)
    if has_tail:
        tail = _dural_tail(anatomy, distance, radius, rng)
        image += tail * (tumour_signal - image)
    # Blend a slightly soft edge so the margin is smooth but sharp, as a well circumscribed mass.
    alpha = np.clip(outline - distance + 0.5, 0.0, 1.0) * inside
    image += alpha * (tumour_signal - image)
    params = {
        "site": site,
        "centre_row": float(centre[0]),
        "centre_col": float(centre[1]),
        "radius_mm": radius / anatomy.px_per_mm,
        "lesion_contrast": lesion_contrast,
        "mass_effect": mass_effect,
        "dural_tail": has_tail,
    }
    return PaintedLesion(image.astype(np.float32), mask, params)


def _white_matter_centre(anatomy: SliceAnatomy, reach: float, rng: np.random.Generator) -> np.ndarray | None:
    """A random white-matter pixel at least ``reach`` pixels from the dura, or None if none is."""
    candidates = np.argwhere((anatomy.white > 0.55) & (anatomy.distance_to_dura > reach))
    if not len(candidates):
        return None
    return candidates[rng.integers(len(candidates))].astype(np.float64)


def paint_glioma(
    anatomy: SliceAnatomy,
    contrast: TissueContrast,
    rng: np.random.Generator,
    difficulty: float,
    lesion_contrast: float,
) -> PaintedLesion:
    """An intra-axial, irregular, heterogeneous mass with a necrotic core and white-matter edema.

    The mask stays :data:`GLIOMA_DURA_MARGIN_MM` or more away from the dura and falx.

    :param anatomy: the slice to paint on.
    :param contrast: the slice's tissue signals.
    :param rng: the sample's random generator.
    :param difficulty: 0 = large and necrotic; 1 = small and often solid.
    :param lesion_contrast: the rim's brightness over grey matter.
    """
    radius = rng.uniform(_lerp(10.0, 5.0, difficulty), _lerp(22.0, 11.0, difficulty)) * anatomy.px_per_mm
    profile = _radial_profile(rng, _lerp(0.5, 0.35, difficulty), range(2, 9))
    margin = GLIOMA_DURA_MARGIN_MM * anatomy.px_per_mm
    centre = _white_matter_centre(anatomy, radius * profile.max_scale + margin, rng)
    # Thin white matter on this level: shrink the tumour until it fits away from the dura.
    while centre is None:
        if radius < 1.0:
            raise ValueError(
                f"Level {anatomy.level_mm} mm has no white matter {GLIOMA_DURA_MARGIN_MM} mm from the dura."
            )
        radius *= 0.8
        centre = _white_matter_centre(anatomy, radius * profile.max_scale + margin, rng)

    mass_effect = rng.uniform(0.1, 0.3)
    signal, white = push_away(
        [render_intracranial(anatomy, contrast), anatomy.white], centre, radius, mass_effect, radius
    )
    image = compose_head(anatomy, signal, contrast)
    distance, angle = _polar(image.shape, centre)
    outline = radius * profile.at(angle)

    # Vasogenic edema spreads along white matter tracts: fingers that spare the cortex.
    edema_extent = radius * rng.uniform(0.8, 1.8) * _lerp(1.0, 0.6, difficulty)
    tracts = np.clip(2.0 * white - 0.7, 0.0, 1.0) * (1.0 + 0.35 * _smooth_noise(rng, image.shape, 2.0))
    # Gaussian fall-off: edema is full next to the tumour and fades at ``edema_extent``.
    spread = np.maximum(distance - outline, 0.0) / edema_extent
    edema = np.clip(np.exp(-(spread**2)) * tracts, 0.0, 1.0) * anatomy.intracranial
    edema_signal = contrast.grey + rng.uniform(0.3, 0.55) * (contrast.csf - contrast.grey)
    image += edema * _lerp(0.9, 0.5, difficulty) * (edema_signal - image)

    # The enhancing rim, as bright as the subject's tumour: a faint one fades into its edema.
    rim_signal = contrast.grey * (1.0 + lesion_contrast)
    tumour_signal = np.full(image.shape, rim_signal, dtype=np.float32)
    necrosis_fraction = 0.0
    if rng.random() < _lerp(0.9, 0.5, difficulty):
        necrosis_fraction = rng.uniform(0.4, 0.7)
        core_outline = outline * necrosis_fraction * _radial_profile(rng, 0.3, range(2, 6)).at(angle)
        core_weight = np.clip((core_outline - distance) / (0.15 * radius) + 0.5, 0.0, 1.0)
        # Darker than the rim and the edema, near white matter: "dark-ish", never black.
        core_signal = contrast.white + (contrast.grey - contrast.white) * rng.uniform(0.0, 0.5)
        tumour_signal += core_weight * (core_signal - tumour_signal)
    # Heterogeneous: blotchy texture throughout the tumour.
    tumour_signal *= 1.0 + 0.12 * _smooth_noise(rng, image.shape, 1.5)

    mask = distance <= outline
    alpha = np.clip(outline - distance + 0.5, 0.0, 1.0)
    image += alpha * (tumour_signal - image)
    params = {
        "site": "white_matter",
        "centre_row": float(centre[0]),
        "centre_col": float(centre[1]),
        "radius_mm": radius / anatomy.px_per_mm,
        "lesion_contrast": lesion_contrast,
        "mass_effect": mass_effect,
        "necrosis_fraction": necrosis_fraction,
        "edema_extent_mm": edema_extent / anatomy.px_per_mm,
    }
    return PaintedLesion(image.astype(np.float32), mask, params)


Painter = Callable[[SliceAnatomy, TissueContrast, np.random.Generator, float, float], PaintedLesion]
# The lesion kinds the generator can draw, by class label.
LESION_PAINTERS: dict[str, Painter] = {"glioma": paint_glioma, "meningioma": paint_meningioma}
