"""Phantom subjects: one person's head, scanner session and tumour, shared by all their slices.

A subject is drawn once from its own seed: a smooth deformation of the MNI152 template (head size,
shape and position in the scanner), an intensity profile (tissue signals, receiver gain, coil
shading, blur and noise level) and the tumour's brightness. Its slices are neighbouring axial
levels of that one head; what differs between them is the level, where and how the lesion is
drawn, and the noise. So two slices of a subject look alike in everything but the lesion: a model
that saw one of them in training has seen that head, which is why a subject must never span two
splits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from launcher.phantom.anatomy import AXIAL_LEVELS_MM, TissueContrast, sample_contrast

# The tumour's brightness over grey matter (before ``difficulty`` fades it), per lesion kind. The
# ranges overlap on most of their width, so brightness alone cannot tell the classes apart: shape,
# site (dura or white matter), edema and necrosis must.
LESION_CONTRAST_RANGE = {"glioma": (0.35, 0.9), "meningioma": (0.2, 0.75)}
# Axial levels between two slices of a subject (3 mm each): slices 6 mm apart, as a clinical series.
_LEVEL_STRIDE = 2
# Control points per side of the smooth displacement field, and its largest shift (share of the side).
_WARP_CONTROL_POINTS = 5
_WARP_AMPLITUDE = 0.025


@dataclass(frozen=True, eq=False)
class Subject:
    """What every slice of one subject shares."""

    subject_id: str
    label: str
    # Entropy of its generators: the subject's draws use stream 0, slice i's stream 1 + i.
    seed: tuple[int, ...]
    # Axial levels (MNI z, mm) of the subject's slices, one per slice.
    levels: tuple[int, ...]
    contrast: TissueContrast
    lesion_contrast: float
    # Pose in the scanner and head size: rotation, zoom, shift (pixels at the image size).
    rotation_deg: float
    zoom: float
    shift_row: float
    shift_col: float
    # Head shape: scale along rows and columns (around the image centre), and a smooth
    # displacement field (2, size, size) in pixels: at a point of the subject's head, the shift to
    # the template point it shows.
    scale_row: float
    scale_col: float
    displacement: np.ndarray
    # Acquisition: blur, receiver gain, coil shading (quadratic-surface coefficients and strength)
    # and noise level; the noise itself is drawn per slice.
    blur_px: float
    intensity_scale: float
    bias_coefficients: np.ndarray
    bias_strength: float
    noise_sigma: float

    def params(self) -> dict[str, object]:
        """The subject's drawn values that go into each of its slices' manifest row."""
        names = ("rotation_deg", "zoom", "shift_row", "shift_col", "scale_row", "scale_col", "blur_px")
        return {
            "subject": self.subject_id,
            **{name: getattr(self, name) for name in names},
            "intensity_scale": self.intensity_scale,
            "bias_strength": self.bias_strength,
            "noise_sigma": self.noise_sigma,
        }


def _levels(count: int, rng: np.random.Generator) -> tuple[int, ...]:
    """``count`` neighbouring levels, ``_LEVEL_STRIDE`` apart (closer if the range is too short)."""
    if not 1 <= count <= len(AXIAL_LEVELS_MM):
        raise ValueError(f"slices per subject must be in [1, {len(AXIAL_LEVELS_MM)}], got {count}")
    stride = _LEVEL_STRIDE if (count - 1) * _LEVEL_STRIDE < len(AXIAL_LEVELS_MM) else 1
    first = int(rng.integers(len(AXIAL_LEVELS_MM) - (count - 1) * stride))
    return tuple(AXIAL_LEVELS_MM[first + stride * i] for i in range(count))


def _displacement(size: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random (2, size, size) field: cubic interpolation of a coarse random grid."""
    coarse = rng.normal(0.0, 1.0, (2, _WARP_CONTROL_POINTS, _WARP_CONTROL_POINTS))
    zoom = size / _WARP_CONTROL_POINTS
    field = np.stack([ndimage.zoom(plane, zoom, order=3, mode="nearest", grid_mode=True) for plane in coarse])
    amplitude = _WARP_AMPLITUDE * size * rng.uniform(0.5, 1.0)
    field *= amplitude / max(float(np.abs(field).max()), 1e-6)
    field = field.astype(np.float32)
    field.setflags(write=False)
    return field


def draw_subject(
    subject_id: str, label: str, slices: int, size: int, difficulty: float, seed: tuple[int, ...]
) -> Subject:
    """One subject of class ``label``, with ``slices`` slices.

    :param subject_id: its id, as written to the labels CSV.
    :param label: a lesion kind of :data:`LESION_CONTRAST_RANGE`.
    :param slices: how many slices it has.
    :param size: image side, pixels (the displacement field's size).
    :param difficulty: 0 = bright lesions, clean images; 1 = faint lesions, noisy, shaded images.
    :param seed: entropy of its random generators, unique to the subject.
    """
    rng = np.random.default_rng(np.random.SeedSequence([*seed, 0]))
    low, high = LESION_CONTRAST_RANGE[label]
    return Subject(
        subject_id=subject_id,
        label=label,
        seed=tuple(seed),
        levels=_levels(slices, rng),
        contrast=sample_contrast(rng),
        lesion_contrast=float(rng.uniform(low, high) * (1.0 - 0.6 * difficulty)),
        rotation_deg=float(rng.uniform(-10.0, 10.0)),
        zoom=float(rng.uniform(0.92, 1.08)),
        shift_row=float(rng.uniform(-0.04, 0.04) * size),
        shift_col=float(rng.uniform(-0.04, 0.04) * size),
        scale_row=float(rng.uniform(0.93, 1.07)),
        scale_col=float(rng.uniform(0.93, 1.07)),
        displacement=_displacement(size, rng),
        blur_px=float(rng.uniform(0.3, 0.9)),
        intensity_scale=float(rng.uniform(0.75, 1.0)),
        bias_coefficients=rng.normal(0.0, 1.0, 5).astype(np.float32),
        bias_strength=float(rng.uniform(0.0, 0.15 + 0.25 * difficulty)),
        noise_sigma=float(rng.uniform(0.7, 1.3) * (0.012 + 0.04 * difficulty)),
    )


class Placement:
    """Where each output pixel of a subject's slice comes from on the template: pose, then shape."""

    def __init__(self, subject: Subject, size: int):
        angle = np.deg2rad(subject.rotation_deg)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        self.centre = np.full(2, (size - 1) / 2.0)
        self.forward = subject.zoom * rotation
        shift = np.array([subject.shift_row, subject.shift_col])
        self.forward_offset = self.centre + shift - self.forward @ self.centre
        self.scale = np.array([subject.scale_row, subject.scale_col])
        self.displacement = subject.displacement

    def _shift_at(self, points: np.ndarray) -> np.ndarray:
        """The displacement field at ``points`` (2, ...), interpolated."""
        flat = points.reshape(2, -1)
        shifts = [ndimage.map_coordinates(plane, flat, order=1, mode="nearest") for plane in self.displacement]
        return np.stack(shifts).reshape(points.shape)

    def template_coordinates(self, size: int) -> np.ndarray:
        """(2, size, size): the template position each output pixel samples."""
        output = np.indices((size, size), dtype=np.float64)
        inverse = np.linalg.inv(self.forward)
        posed = np.tensordot(inverse, output.reshape(2, -1) - self.forward_offset[:, None], axes=1)
        posed = posed.reshape(output.shape)
        centre = self.centre[:, None, None]
        return centre + (posed - centre) / self.scale[:, None, None] + self._shift_at(posed)

    def output_position(self, template_point: np.ndarray) -> np.ndarray:
        """Where a template point lands in the output: the shape map inverted by fixed-point
        iteration (the field is smooth and small, so a few steps reach sub-pixel), then the pose."""
        point = self.centre + self.scale * (template_point - self.centre)
        for _ in range(8):
            shift = self._shift_at(point[:, None])[:, 0]
            point = self.centre + self.scale * (template_point - self.centre - shift)
        return self.forward @ point + self.forward_offset


def place(subject: Subject, image: np.ndarray, mask: np.ndarray, centre: np.ndarray):
    """Move a painted template slice into the subject's head and pose.

    :param subject: whose head it is.
    :param image: the painted slice on the template.
    :param mask: its lesion mask.
    :param centre: the lesion centre on the template (row, col).
    :returns: the moved image, the moved mask and the lesion centre in output pixels.
    """
    size = image.shape[0]
    placement = Placement(subject, size)
    coordinates = placement.template_coordinates(size)
    moved = ndimage.map_coordinates(image, coordinates, order=1, mode="constant")
    moved_mask = ndimage.map_coordinates(mask.astype(np.float32), coordinates, order=1) > 0.5
    return moved, moved_mask, placement.output_position(np.asarray(centre, dtype=np.float64))


def bias_field(size: int, coefficients: np.ndarray, strength: float) -> np.ndarray:
    """Smooth multiplicative coil shading: exp of a quadratic surface over the image, scaled so its
    largest excursion is ``strength``. Training's ``include.ml.data.augment_intensity`` draws the
    same kind of field (``include/`` cannot import the launcher)."""
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    rows, cols = np.meshgrid(axis, axis, indexing="ij")
    terms = np.stack([rows, cols, rows * cols, rows**2 - 1 / 3, cols**2 - 1 / 3])
    surface = np.tensordot(coefficients, terms, axes=1)
    return np.exp(strength * surface / max(float(np.abs(surface).max()), 1e-6))


def acquire(subject: Subject, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The subject's scanner on one slice: blur, coil shading, gain, then Rician magnitude noise
    (noise on the real and imaginary channels, then the modulus: why the background is a dim
    speckle, not black). The noise is the slice's own draw.

    :param subject: whose session it is.
    :param image: the placed slice, CSF near 1.
    :param rng: the slice's random generator.
    """
    image = ndimage.gaussian_filter(image, subject.blur_px)
    shading = bias_field(image.shape[0], subject.bias_coefficients, subject.bias_strength)
    image = image * shading * subject.intensity_scale
    real = image + rng.normal(0.0, subject.noise_sigma, image.shape)
    imaginary = rng.normal(0.0, subject.noise_sigma, image.shape)
    return np.hypot(real, imaginary)
