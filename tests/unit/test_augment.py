"""Intensity augmentation (issue 20): a gain, a bias field and noise per image, on the [0, 1] image
behind the processor's normalisation, seeded, the same in the three channels; switched by
``TrainConfig.augment_intensity``, with ``augment`` the switch of all augmentation."""

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import include.ml.train as train
from include.ml.data import augment, augment_intensity, processor_normalisation
from include.ml.hyperparameters import TrainConfig
from include.ml.source import build_processor
from tests.support.tiny_models import tiny_resnet

# The project's processor (build_processor) and an ImageNet one (a hub ResNet's): channels differ.
PROJECT = ([0.5] * 3, [0.5] * 3)
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def normalised(image: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """(n, 1, H, W) grey [0, 1] images replicated to RGB, then normalised as the processor does."""
    return (image.expand(-1, 3, -1, -1) - torch.tensor(mean).reshape(1, 3, 1, 1)) / torch.tensor(std).reshape(
        1, 3, 1, 1
    )


def unnormalised(batch: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    return batch * torch.tensor(std).reshape(1, 3, 1, 1) + torch.tensor(mean).reshape(1, 3, 1, 1)


def grey_batch(n: int = 16, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Slices in [0, 1]: a dark background, a brighter disc, a saturated spot (clamping is exercised)."""
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    disc = ((rows**2 + cols**2) < 0.5).float()
    image = 0.05 + 0.5 * disc * (0.6 + 0.4 * torch.rand(n, 1, 1, 1, generator=g))
    image[:, :, 10:13, 10:13] = 1.0
    return image.expand(n, 1, size, size).clone()


def test_each_image_of_a_batch_gets_its_own_gain_and_field():
    mean, std = PROJECT
    image = torch.full((16, 1, 32, 32), 0.5)
    out = unnormalised(
        augment_intensity(normalised(image, mean, std), torch.Generator().manual_seed(0), mean, std), mean, std
    )

    means = out.mean(dim=(1, 2, 3))
    assert (out - 0.5).abs().amax(dim=(1, 2, 3)).min() > 1e-2  # every image changed
    assert means.max() - means.min() > 0.05  # and not by one factor for all: gains of 0.8-1.2 apart
    assert out.std(dim=(2, 3)).min() > 0.0  # a flat image is no longer flat: field and noise
    # Each image's brightness lies within what a gain of [0.8, 1.2] times a field of exp(+-0.3) allows.
    assert ((means > 0.5 * 0.8 * np.exp(-0.3)) & (means < 0.5 * 1.2 * np.exp(0.3))).all()


@pytest.mark.parametrize("stats", [PROJECT, IMAGENET], ids=["project", "imagenet"])
def test_the_result_is_a_normalised_image_of_0_to_1_with_equal_channels(stats):
    mean, std = stats
    batch = normalised(grey_batch(), mean, std)
    out = augment_intensity(batch, torch.Generator().manual_seed(1), mean, std)

    image = unnormalised(out, mean, std)
    assert image.min() >= -1e-6 and image.max() <= 1 + 1e-6
    assert image.max() > 0.999  # the saturated spot stays saturated where the gain is above 1
    torch.testing.assert_close(image[:, 1], image[:, 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(image[:, 2], image[:, 0], rtol=0, atol=1e-6)
    if stats == PROJECT:  # the same mean and std in every channel: equal channels stay exactly equal
        assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])


def test_the_same_seed_gives_the_same_augmentation_and_another_seed_another():
    mean, std = PROJECT
    batch = normalised(grey_batch(), mean, std)

    def run(seed: int) -> torch.Tensor:
        return augment_intensity(batch, torch.Generator().manual_seed(seed), mean, std)

    assert torch.equal(run(3), run(3))
    assert not torch.allclose(run(3), run(4))


def test_the_processors_normalisation_is_read_or_refused_with_what_to_do():
    assert processor_normalisation(build_processor(32)) == PROJECT
    imagenet = SimpleNamespace(do_rescale=True, do_normalize=True, image_mean=IMAGENET[0], image_std=IMAGENET[1])
    assert processor_normalisation(imagenet) == IMAGENET
    assert processor_normalisation(SimpleNamespace(do_normalize=True, image_mean=0.5, image_std=0.25)) == (
        [0.5] * 3,
        [0.25] * 3,
    )
    # No normalisation: the tensors are the [0, 1] image, explicitly.
    assert processor_normalisation(SimpleNamespace(do_normalize=False)) == ([0.0] * 3, [1.0] * 3)
    with pytest.raises(ValueError, match=r"\(SimpleNamespace\) normalises but has no image_mean/image_std.*"):
        processor_normalisation(SimpleNamespace(do_normalize=True, image_mean=None, image_std=[0.5] * 3))
    with pytest.raises(ValueError, match="does not rescale pixels to .0, 1.*set augment_intensity to false"):
        processor_normalisation(SimpleNamespace(do_rescale=False, image_mean=[0.5] * 3, image_std=[0.5] * 3))


def toy_set(count: int = 16) -> tuple[list[Image.Image], list[int]]:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32)).astype(np.uint8)).convert("RGB") for _ in range(count)]
    return images, [i % 2 for i in range(count)]


@pytest.mark.parametrize(
    ("flags", "geometric", "intensity"),
    [
        ({}, 2, 2),
        ({"augment_intensity": False}, 2, 0),
        ({"augment": False}, 0, 0),  # augment switches all augmentation off, intensity included
    ],
    ids=["both", "geometry-only", "none"],
)
def test_fine_tune_augments_intensity_only_when_configured(monkeypatch, flags, geometric, intensity):
    calls = {"geometric": [], "intensity": []}

    def spy(name, function):
        def wrapped(*args):
            out = function(*args)
            calls[name].append((args, out))
            return out

        return wrapped

    monkeypatch.setattr(train, "augment", spy("geometric", augment))
    monkeypatch.setattr(train, "augment_intensity", spy("intensity", augment_intensity))
    model, seen = tiny_resnet(), []
    forward = model.forward
    monkeypatch.setattr(
        model, "forward", lambda pixel_values, **kw: seen.append(pixel_values) or forward(pixel_values, **kw)
    )
    config = TrainConfig(epochs=1, batch_size=8, image_size=32, validation_fraction=0, **flags)

    images, targets = toy_set()
    train.fine_tune(model, build_processor(32), images, targets, config)

    assert (len(calls["geometric"]), len(calls["intensity"])) == (geometric, intensity)
    assert len(seen) == 2
    for step, pixels in enumerate(seen):
        if intensity:  # the warped batch goes through the intensity part, with the processor's statistics
            args, out = calls["intensity"][step]
            assert args[0] is calls["geometric"][step][1] and args[2:] == PROJECT
            assert pixels is out
        elif geometric:  # only the geometric warp: the intensities the model sees are the warp's own
            assert pixels is calls["geometric"][step][1]


def test_augment_intensity_is_a_bool_hyperparameter_that_round_trips():
    assert TrainConfig().augment_intensity is True
    assert TrainConfig.from_dict({"augment_intensity": False}, "sweep 0").augment_intensity is False
    for wrong in (0, "false", None):
        with pytest.raises(ValueError, match=rf"sweep 0: augment_intensity={wrong!r} should be a bool"):
            TrainConfig.from_dict({"augment_intensity": wrong}, "sweep 0")
    config = TrainConfig(augment_intensity=False, seed=3)
    assert TrainConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(config))), "x") == config
