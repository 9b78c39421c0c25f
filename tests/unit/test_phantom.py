"""The phantom generator: deterministic, Kaggle-shaped output with subjects kept to one split,
lesions where each type belongs, and classes that brightness alone does not separate."""

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from include.registry.records import csv_names, csv_path
from launcher.phantom import PhantomConfig, generate_dataset
from launcher.phantom import anatomy as phantom_anatomy
from launcher.phantom.anatomy import AXIAL_LEVELS_MM, TemplateNotFoundError, sample_contrast, slice_anatomy
from launcher.phantom.generate import MANIFEST_COLUMNS, make_subject, render_slice
from launcher.phantom.lesions import GLIOMA_DURA_MARGIN_MM, paint_glioma, paint_meningioma
from launcher.phantom.subjects import LESION_CONTRAST_RANGE, Placement

# Two subjects per class: one of 5 slices in train/, one of 3 in test/.
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
    return anatomy, painter(anatomy, sample_contrast(rng), rng, difficulty, rng.uniform(0.2, 0.9))


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path, dataset):
    again = generate_dataset(tmp_path / "again", SMALL)
    other = generate_dataset(tmp_path / "other", PhantomConfig(per_class=8, seed=2))
    first = _files(dataset)
    assert first == _files(again)
    other_files = _files(other)
    assert first.keys() == other_files.keys()
    # Every image differs; labels.csv does not (the same files of the same subjects).
    assert all(first[name] != other_files[name] for name in first if name != "labels.csv")


def test_a_slice_does_not_depend_on_what_else_is_generated():
    alone, _, _ = render_slice(make_subject("glioma", 1, SMALL), 2, SMALL)
    render_slice(make_subject("meningioma", 0, SMALL), 0, SMALL)
    render_slice(make_subject("glioma", 1, SMALL), 1, SMALL)
    after_others, _, _ = render_slice(make_subject("glioma", 1, SMALL), 2, SMALL)
    assert np.array_equal(alone, after_others)


def test_manifest_and_labels_csv_split_by_subject(dataset):
    rows = _manifest(dataset)
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    for label in SMALL.labels:
        splits = [row["split"] for row in rows if row["label"] == label]
        assert splits.count("train") == 5 and splits.count("test") == 3
    images = sorted(name for name in _files(dataset) if name.endswith(".jpg"))
    assert sorted(row["file"] for row in rows) == images
    # A subject's slices all sit in one split.
    splits_of = {}
    for row in rows:
        splits_of.setdefault(row["subject"], set()).add(row["split"])
    assert sorted(splits_of) == ["sub-001", "sub-002", "sub-003", "sub-004"]
    assert all(len(splits) == 1 for splits in splits_of.values())
    # labels.csv is what MRI_LABELS_CSV reads: the same files, classes and subjects.
    with (dataset / "labels.csv").open(newline="") as handle:
        labels_csv = list(csv.DictReader(handle))
    assert tuple(labels_csv[0]) == ("file", "label", "subject")
    assert labels_csv == [{"file": row["file"], "label": row["label"], "subject": row["subject"]} for row in rows]


def test_a_subjects_slices_share_head_pose_and_scanner_but_not_the_level():
    subject = make_subject("meningioma", 0, SMALL)
    slices = [render_slice(subject, i, SMALL)[2] for i in range(len(subject.levels))]
    shared = ("subject", "rotation_deg", "zoom", "scale_row", "intensity_scale", "bias_strength", "noise_sigma")
    first = {name: slices[0][name] for name in shared}
    assert all({name: params[name] for name in shared} == first for params in slices)
    levels = [params["level_mm"] for params in slices]
    assert len(set(levels)) == len(levels) and np.all(np.diff(levels) == 6), levels
    other = render_slice(make_subject("meningioma", 1, SMALL), 0, SMALL)[2]
    assert {name: other[name] for name in shared} != first


def test_subjects_of_one_class_differ_in_head_shape():
    """The same level of two subjects: the template, deformed and posed differently per subject."""
    config = PhantomConfig(per_class=40, seed=0, difficulty=0.0)
    heads = []
    for index in range(2):
        subject = make_subject("glioma", index, config)
        pixels, _, _ = render_slice(subject, 0, config)
        heads.append(ndimage.binary_fill_holes(pixels > 40))
    assert (heads[0] ^ heads[1]).sum() > 0.05 * heads[0].sum()


def test_lesion_brightness_overlaps_between_classes():
    """Across many subjects, the tumour contrast of the two classes shares most of its range, so a
    model cannot tell glioma from meningioma by brightness alone."""
    config = PhantomConfig(per_class=400, seed=0)
    contrasts = {
        label: np.array([make_subject(label, i, config).lesion_contrast for i in range(config.subjects_per_class)])
        for label in config.labels
    }
    glioma, meningioma = contrasts["glioma"], contrasts["meningioma"]
    overlap = (max(glioma.min(), meningioma.min()), min(glioma.max(), meningioma.max()))
    assert overlap[1] - overlap[0] > 0.5 * (glioma.max() - glioma.min())
    for label, values in contrasts.items():
        assert np.mean((values >= overlap[0]) & (values <= overlap[1])) > 0.6, label
    low, high = LESION_CONTRAST_RANGE["glioma"]
    assert glioma.min() >= low * 0.7 - 1e-9 and glioma.max() <= high * 0.7 + 1e-9  # difficulty 0.5 fades by 0.7


def test_too_few_images_for_a_subject_per_split_is_refused():
    with pytest.raises(ValueError, match="one subject per class"):
        PhantomConfig(per_class=4, slices_per_subject=5)
    assert PhantomConfig(per_class=4, slices_per_subject=5, test_fraction=0).train_count == 4


def test_more_slices_than_levels_is_refused_before_anything_is_deleted(tmp_path, dataset):
    before = _files(dataset)
    with pytest.raises(ValueError, match=r"slices_per_subject must be in \[1, 25\]"):
        generate_dataset(dataset, PhantomConfig(per_class=60, slices_per_subject=30))
    assert _files(dataset) == before


def test_the_placement_puts_a_template_point_back_where_its_pixel_is():
    """``output_position`` inverts ``template_coordinates`` (pose, head scale and the displacement
    field), so a lesion centre drawn on the template lands on the lesion in the output."""
    subject = make_subject("glioma", 3, PhantomConfig(per_class=40, seed=4))
    placement = Placement(subject, 256)
    sources = placement.template_coordinates(256)
    for row, col in [(40, 200), (128, 128), (90, 60), (210, 150)]:
        back = placement.output_position(sources[:, row, col])
        assert np.allclose(back, (row, col), atol=0.1), (row, col, back)


def test_labels_csv_names_the_files_as_a_flat_upload_reaches_the_registry(dataset):
    """Uploaded flat into landing/<split>/ and moved to raw/<split>/ (a re-upload with its suffix),
    each file finds its labels.csv row: the row the registry's MRI_LABELS_CSV lookup reads."""
    with (dataset / "labels.csv").open(newline="") as handle:
        rows = {csv_path(row["file"]): row for row in csv.DictReader(handle)}
    for path in sorted(dataset.glob("*/*.jpg")):
        split, name = path.parent.name, path.name
        stem, extension = name.rsplit(".", 1)
        for key in (f"raw/{split}/{name}", f"raw/{split}/{stem} (upload 3f9a1c2b0e4d).{extension}"):
            with_split, _ = csv_names(key, split)
            assert rows[with_split]["subject"].startswith("sub-"), key
            assert rows[with_split]["label"] == name.split(" (")[0]


def test_files_of_another_label_left_by_an_earlier_run_are_removed(tmp_path):
    generate_dataset(tmp_path, PhantomConfig(labels=("meningioma",), per_class=4, slices_per_subject=2, size=64))
    generate_dataset(tmp_path, PhantomConfig(labels=("glioma",), per_class=4, slices_per_subject=2, size=64))
    assert sorted(path.name for path in tmp_path.glob("*/*.jpg")) == [
        "glioma (1).jpg",
        "glioma (1).jpg",
        "glioma (2).jpg",
        "glioma (2).jpg",
    ]


def test_files_are_named_like_kaggle_and_numbered_from_one_per_split(dataset):
    for split, count in (("train", 5), ("test", 3)):
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
    generate_dataset(tmp_path, PhantomConfig(per_class=4, slices_per_subject=1, image_format="png", size=128))
    generate_dataset(tmp_path, PhantomConfig(per_class=2, slices_per_subject=1, image_format="png", size=128))
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
@pytest.mark.parametrize("subject_index", range(4))
def test_render_slice_returns_an_aligned_mask_and_its_parameters(label, subject_index):
    subject = make_subject(label, subject_index, PhantomConfig(per_class=40, seed=7))
    pixels, mask, params = render_slice(subject, 1, SMALL)
    assert pixels.dtype == np.uint8 and pixels.shape == (256, 256)
    assert mask.dtype == bool and mask.shape == pixels.shape and mask.any()
    row, col = round(params["centre_row"]), round(params["centre_col"])
    assert ndimage.binary_dilation(mask, iterations=3)[row, col], "the centre follows the deformed, posed mask"
    assert params["label"] == label and params["level_mm"] in AXIAL_LEVELS_MM


def test_unknown_label_names_the_supported_lesion_kinds():
    with pytest.raises(ValueError, match=r"'pituitary'.*\['glioma', 'meningioma'\]"):
        PhantomConfig(labels=("glioma", "pituitary"))
    with pytest.raises(ValueError, match="supported lesion kinds"):
        make_subject("notumor", 0)


def test_missing_nilearn_names_the_package_to_install(monkeypatch):
    monkeypatch.setattr(phantom_anatomy.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TemplateNotFoundError, match=r"pip install nilearn"):
        phantom_anatomy.template_dir()
