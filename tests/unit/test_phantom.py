"""The phantom generator: deterministic, Kaggle-shaped output, and lesions where each type belongs."""

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from launcher.phantom import PhantomConfig, generate_dataset
from launcher.phantom import anatomy as phantom_anatomy
from launcher.phantom.anatomy import AXIAL_LEVELS_MM, TemplateNotFoundError, sample_contrast, slice_anatomy
from launcher.phantom.generate import MANIFEST_COLUMNS, render_sample, sample_rng
from launcher.phantom.lesions import GLIOMA_DURA_MARGIN_MM, paint_glioma, paint_meningioma

SMALL = PhantomConfig(per_class=8, seed=1)
KAGGLE_NAME = re.compile(r"^(glioma|meningioma) \(\d+\)\.jpg$")


def _files(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def _manifest(root: Path) -> list[dict[str, str]]:
    with (root / "manifest.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("phantom"), SMALL)


def _painted(painter, seed: int, difficulty: float = 0.5):
    """A painter's output on a random level, with the anatomy it was painted on."""
    rng = np.random.default_rng(seed)
    anatomy = slice_anatomy(int(rng.choice(AXIAL_LEVELS_MM)), 256)
    return anatomy, painter(anatomy, sample_contrast(rng), rng, difficulty)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path, dataset):
    again = generate_dataset(tmp_path / "again", SMALL)
    other = generate_dataset(tmp_path / "other", PhantomConfig(per_class=8, seed=2))
    first = _files(dataset)
    assert first == _files(again)
    other_files = _files(other)
    assert first.keys() == other_files.keys()
    assert all(first[name] != other_files[name] for name in first)


def test_a_sample_does_not_depend_on_what_else_is_generated():
    alone, _, _ = render_sample("glioma", sample_rng(1, "glioma", 5), SMALL)
    render_sample("meningioma", sample_rng(1, "meningioma", 0), SMALL)
    after_another, _, _ = render_sample("glioma", sample_rng(1, "glioma", 5), SMALL)
    assert np.array_equal(alone, after_another)


def test_manifest_is_balanced_and_split_75_25(dataset):
    rows = _manifest(dataset)
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    for label in SMALL.labels:
        splits = [row["split"] for row in rows if row["label"] == label]
        assert splits.count("train") == 6 and splits.count("test") == 2
    images = sorted(name for name in _files(dataset) if name != "manifest.csv")
    assert sorted(row["file"] for row in rows) == images


def test_files_are_named_like_kaggle_and_numbered_from_one_per_split(dataset):
    for split, count in (("train", 6), ("test", 2)):
        names = sorted(path.name for path in (dataset / split).iterdir())
        assert all(KAGGLE_NAME.match(name) for name in names), names
        for label in SMALL.labels:
            expected = {f"{label} ({number}).jpg" for number in range(1, count + 1)}
            assert {name for name in names if name.startswith(label)} == expected


def test_every_image_is_8_bit_grey_of_the_configured_size(dataset):
    for path in dataset.rglob("*.jpg"):
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == (SMALL.size, SMALL.size)


def test_png_format_and_smaller_rerun_leave_no_stale_files(tmp_path):
    generate_dataset(tmp_path, PhantomConfig(per_class=4, image_format="png", size=128))
    generate_dataset(tmp_path, PhantomConfig(per_class=2, image_format="png", size=128))
    images = sorted(path.name for path in tmp_path.rglob("*.png"))
    assert images == ["glioma (1).png", "glioma (1).png", "meningioma (1).png", "meningioma (1).png"]
    with Image.open(tmp_path / "train" / "glioma (1).png") as image:
        assert image.mode == "L" and image.size == (128, 128)


@pytest.mark.parametrize("seed", range(40))
def test_meningioma_mask_touches_the_dura_or_falx(seed):
    anatomy, (_, mask, params) = _painted(paint_meningioma, seed)
    assert mask.any()
    assert (mask & anatomy.dura).any(), params
    assert mask[anatomy.intracranial].sum() == mask.sum(), "a meningioma stays inside the skull"


@pytest.mark.parametrize("seed", range(40))
def test_glioma_mask_sits_in_white_matter_away_from_the_dura(seed):
    anatomy, (_, mask, params) = _painted(paint_glioma, seed, difficulty=seed / 39)
    assert mask.any()
    assert anatomy.distance_to_dura[mask].min() >= GLIOMA_DURA_MARGIN_MM * anatomy.px_per_mm, params
    centre = int(params["centre_row"]), int(params["centre_col"])
    assert anatomy.white[centre] > 0.5


@pytest.mark.parametrize("label", ["glioma", "meningioma"])
def test_render_sample_returns_an_aligned_mask_and_its_parameters(label):
    pixels, mask, params = render_sample(label, 7, SMALL)
    assert pixels.dtype == np.uint8 and pixels.shape == (256, 256)
    assert mask.dtype == bool and mask.shape == pixels.shape and mask.any()
    row, col = round(params["centre_row"]), round(params["centre_col"])
    assert ndimage.binary_dilation(mask, iterations=3)[row, col], "the centre follows the repositioned mask"
    assert params["label"] == label and params["level_mm"] in AXIAL_LEVELS_MM


def test_unknown_label_names_the_supported_lesion_kinds():
    with pytest.raises(ValueError, match=r"'pituitary'.*\['glioma', 'meningioma'\]"):
        PhantomConfig(labels=("glioma", "pituitary"))
    with pytest.raises(ValueError, match="supported lesion kinds"):
        render_sample("notumor", 0)


def test_missing_nilearn_names_the_package_to_install(monkeypatch):
    monkeypatch.setattr(phantom_anatomy.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TemplateNotFoundError, match=r"pip install nilearn"):
        phantom_anatomy.template_dir()
