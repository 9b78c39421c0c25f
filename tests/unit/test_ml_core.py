"""The ML core with a tiny ResNet and a handful of toy images: it learns, it reloads to the same
predictions, its metrics give hand-checked values, its bundles are all or nothing, its sources download
nothing, and it never imports Airflow."""

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from include import ml
from include.config import ConfigError, load_settings
from include.ml.architectures import checked_architecture
from include.ml.bootstrap import metric_interval
from include.ml.bundle import BundleError, load_model, save_model
from include.ml.evaluate import evaluate
from include.ml.hyperparameters import TrainConfig
from include.ml.metrics import classification_metrics, roc_curve
from include.ml.predict import open_image, predict_proba
from include.ml.source import ModelSourceError, build_processor, load_base_model
from include.ml.train import TrainingDiverged, fine_tune
from tests.support.tiny_models import tiny_resnet

LABELS = ("glioma", "meningioma")


def toy_images(count: int, seed: int) -> tuple[list[Image.Image], list[int]]:
    """Class 0: a bright patch in the top half; class 1: in the bottom half (flips are horizontal)."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for i in range(count):
        pixels = rng.integers(0, 40, (48, 48)).astype(np.uint8)
        row, column = rng.integers(4, 14), rng.integers(8, 40)
        rows = slice(row, row + 10) if i % 2 == 0 else slice(38 - row, 48 - row)
        pixels[rows, column - 6 : column + 4] = 230
        images.append(Image.fromarray(pixels).convert("RGB"))
        targets.append(i % 2)
    return images, targets


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)  # the tests share the machine; tiny models gain nothing from more


def test_include_ml_never_imports_airflow():
    modules = sorted(p.stem for p in Path(ml.__file__).parent.glob("*.py") if p.stem != "__init__")
    assert {"bundle", "predict", "train", "evaluate"} <= set(modules)
    code = (
        "import sys\n"
        + "".join(f"import include.ml.{name}\n" for name in modules)
        + "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, "PNG") if mode else Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def test_open_image_makes_rgb_from_16_bit_grayscale_rgba_and_8_bit_gray():
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096).astype(np.uint16)  # 12-bit values
    wide = open_image(png(ramp))
    assert (wide.mode, wide.size) == ("RGB", (64, 64))
    assert np.asarray(wide).max() == 255  # scaled by the image's maximum, not left near black

    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128  # half-transparent red over the black background
    assert open_image(png(rgba)).getpixel((0, 0)) == (100, 0, 0)

    gray = open_image(png(np.full((64, 64), 77, dtype=np.uint8)))
    assert (gray.mode, gray.getpixel((5, 5))) == ("RGB", (77, 77, 77))


FIXED_TARGETS = np.array([0, 0, 1, 1, 0, 1, 1, 0, 1, 0])
FIXED_P1 = np.array([0.1, 0.4, 0.45, 0.8, 0.4, 0.9, 0.6, 0.2, 0.55, 0.7])  # with a tie at 0.4


def test_binary_metrics_on_a_hand_checked_example():
    probabilities = np.column_stack([1 - FIXED_P1, FIXED_P1])
    metrics = classification_metrics(FIXED_TARGETS, probabilities)

    # Predicted 1 when P(1) > 0.5: 4 true positives, 1 false positive (0.7), 1 false negative (0.45).
    assert metrics["confusion_matrix"] == [[4, 1], [1, 4]]
    assert metrics["accuracy"] == metrics["precision"] == metrics["recall"] == pytest.approx(0.8)
    assert metrics["f1"] == pytest.approx(0.8)
    assert metrics["roc_auc"] == pytest.approx(0.88)  # 22 of the 25 (positive, negative) pairs ranked right
    true_class_p = [0.9, 0.6, 0.45, 0.8, 0.6, 0.9, 0.6, 0.8, 0.55, 0.3]
    assert metrics["loss"] == pytest.approx(-np.mean(np.log(true_class_p)))
    # The two tied negatives at 0.4 are one threshold: one step of 0.4 in the false positive rate.
    fpr, tpr = roc_curve(FIXED_TARGETS == 1, FIXED_P1)
    np.testing.assert_allclose(fpr, [0, 0, 0, 0.2, 0.2, 0.2, 0.2, 0.6, 0.8, 1])
    np.testing.assert_allclose(tpr, [0, 0.2, 0.4, 0.4, 0.6, 0.8, 1, 1, 1, 1])


def test_binary_precision_recall_and_f1_are_of_class_1():
    probabilities = np.array([[0.1, 0.9], [0.7, 0.3], [0.8, 0.2], [0.4, 0.6]])
    metrics = classification_metrics([1, 1, 1, 0], probabilities)
    assert metrics["confusion_matrix"] == [[0, 1], [2, 1]]
    assert (metrics["precision"], metrics["recall"]) == (pytest.approx(1 / 2), pytest.approx(1 / 3))
    assert metrics["f1"] == pytest.approx(0.4)  # class 0's would be 0
    assert metrics["accuracy"] == pytest.approx(0.25)
    assert metrics["roc_auc"] == pytest.approx(1 / 3)  # only 0.9 outranks the negative's 0.6


def test_roc_auc_is_computed_on_probabilities_not_on_hard_predictions():
    probabilities = np.column_stack([1 - FIXED_P1, FIXED_P1])
    on_labels = classification_metrics(FIXED_TARGETS, np.eye(2)[probabilities.argmax(axis=1)])["roc_auc"]
    ours = classification_metrics(FIXED_TARGETS, probabilities)["roc_auc"]
    assert ours == pytest.approx(0.88) and on_labels == pytest.approx(0.8)


def test_three_class_metrics_are_one_vs_rest_macro_averages():
    targets = [0, 1, 2, 0, 1, 2, 1]
    probabilities = np.array(
        [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.3, 0.5, 0.2]]
        + [[0.1, 0.8, 0.1], [0.5, 0.1, 0.4], [0.3, 0.6, 0.1]]
    )
    metrics = classification_metrics(targets, probabilities)

    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    assert metrics["accuracy"] == pytest.approx(5 / 7)
    # Per class precision 1/2, 3/4, 1; recall 1/2, 1, 1/2; F1 1/2, 6/7, 2/3: unweighted means, not by support.
    assert metrics["precision"] == pytest.approx(3 / 4)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx((1 / 2 + 6 / 7 + 2 / 3) / 3)
    # One-vs-rest AUC 8.5/10 (a tie at 0.3 counts half), 1 and 1.
    assert metrics["roc_auc"] == pytest.approx(0.95)
    assert metrics["loss"] == pytest.approx(-np.mean(np.log([0.6, 0.7, 0.7, 0.3, 0.8, 0.4, 0.6])))


def test_a_confident_mistake_costs_a_finite_loss():
    metrics = classification_metrics([0, 1], np.array([[1.0, 0.0], [1.0, 0.0]]))
    assert metrics["loss"] == pytest.approx(-np.log(1e-12) / 2)


def test_roc_auc_is_none_with_one_class_and_over_the_classes_present_otherwise():
    one_class = classification_metrics([1, 1, 1], np.array([[0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]))
    assert one_class["roc_auc"] is None
    assert (one_class["accuracy"], one_class["precision"], one_class["recall"]) == (
        pytest.approx(2 / 3),
        pytest.approx(1.0),
        pytest.approx(2 / 3),
    )
    probabilities = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.4, 0.35, 0.25], [0.45, 0.5, 0.05]])
    missing_class = classification_metrics([0, 1, 0, 1], probabilities)
    # Class 2 has no image, so no ROC curve: said per class, and the macro is over classes 0 and 1.
    assert [c["roc_auc"] for c in missing_class["per_class"]] == [0.75, 1.0, None]
    assert missing_class["roc_auc"] == pytest.approx(0.875)
    interval = metric_interval([0, 1, 0, 1], probabilities, "roc_auc", 200)
    assert interval.value == pytest.approx(0.875) and interval.resamples == 200
    assert missing_class["confusion_matrix"] == [[2, 0, 0], [0, 2, 0], [0, 0, 0]]
    assert missing_class["precision"] == pytest.approx(2 / 3)  # class 2, never predicted, counts as 0
    fpr, tpr = roc_curve(np.array([False, False, False]), np.array([0.1, 0.3, 0.3]))
    np.testing.assert_array_equal(tpr, [0, 0, 0])  # no positive: 0, not NaN
    np.testing.assert_allclose(fpr, [0, 2 / 3, 1])


def test_no_images_give_no_loss_and_no_roc_auc():
    metrics = classification_metrics([], np.zeros((0, 2)))
    assert (metrics["loss"], metrics["roc_auc"], metrics["accuracy"], metrics["f1"]) == (None, None, 0.0, 0.0)
    assert metrics["confusion_matrix"] == [[0, 0], [0, 0]]


def test_fine_tuning_learns_a_separable_toy_set(tmp_path):
    images, targets = toy_images(32, seed=0)
    test_images, test_targets = toy_images(16, seed=1)
    model, processor = tiny_resnet(), build_processor(32)
    config = TrainConfig(epochs=8, batch_size=8, learning_rate=1e-2, image_size=32, validation_fraction=0.25)

    result = fine_tune(model, processor, images, targets, config)
    evaluation = evaluate(model, processor, test_images, test_targets, tmp_path, "toy")

    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert evaluation["roc_auc"] > 0.9
    assert (tmp_path / "roc.png").stat().st_size > 0 and (tmp_path / "confusion.png").stat().st_size > 0


def test_a_diverging_run_stops_with_the_setting_to_lower():
    images, targets = toy_images(16, seed=0)
    config = TrainConfig(epochs=3, batch_size=8, learning_rate=1e9, image_size=32, validation_fraction=0)
    with pytest.raises(TrainingDiverged, match=r"training diverged. Lower learning_rate \(now 1000000000.0\)"):
        fine_tune(tiny_resnet(), build_processor(32), images, targets, config)


def test_a_saved_model_reloads_to_identical_predictions(tmp_path):
    images, _ = toy_images(6, seed=2)
    model, processor = tiny_resnet(seed=5, num_labels=3), build_processor(32)
    save_model(model, processor, tmp_path / "m", {"model_id": "m", "train_snapshot": "abc"})

    loaded = load_model(tmp_path / "m")

    before = predict_proba(model, processor, images, batch_size=4)
    assert before.shape == (6, 3) and np.allclose(before.sum(axis=1), 1)
    np.testing.assert_array_equal(predict_proba(loaded.model, loaded.processor, images, batch_size=4), before)
    assert loaded.metadata["id2label"] == {"0": "glioma", "1": "meningioma", "2": "pituitary"}
    assert loaded.metadata["train_snapshot"] == "abc" and "transformers" in loaded.metadata["libraries"]
    assert loaded.processor.crop_pct == 1.0


def test_a_failed_save_leaves_neither_the_model_folder_nor_a_temp_folder(tmp_path):
    class ProcessorThatCannotBeSaved:
        def save_pretrained(self, directory):
            raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        save_model(tiny_resnet(), ProcessorThatCannotBeSaved(), tmp_path / "models" / "m1", {})
    assert list((tmp_path / "models").iterdir()) == []


def test_saving_over_an_existing_bundle_replaces_it_whole(tmp_path):
    save_model(tiny_resnet(), build_processor(32), tmp_path / "m", {"attempt": 1})
    save_model(tiny_resnet(seed=1), build_processor(32), tmp_path / "m", {"attempt": 2})
    assert load_model(tmp_path / "m").metadata["attempt"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_loading_an_incomplete_bundle_names_the_path_and_what_is_missing(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(BundleError, match=r"half is missing or incomplete \(missing: preprocessor_config.json"):
        load_model(tmp_path / "half")


def test_resnet_config_typos_are_refused_not_silently_ignored():
    with pytest.raises(ValueError, match=r"unknown ResNetConfig arguments \['depth'\]"):
        checked_architecture({"depth": [1, 1]}, "test")


def test_unknown_hyperparameters_and_wrong_types_are_refused():
    with pytest.raises(ValueError, match=r"sweep 0: unknown hyperparameters \['lr'\]"):
        TrainConfig.from_dict({"lr": 0.1}, "sweep 0")
    with pytest.raises(ValueError, match="epochs='3' should be a int"):
        TrainConfig.from_dict({"epochs": "3"}, "sweep 0")
    assert TrainConfig.from_dict({"learning_rate": 1}, "x").learning_rate == 1.0


def test_a_hub_id_fails_offline_with_how_to_point_at_a_local_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to fall back on
    with pytest.raises(ModelSourceError) as raised:
        load_base_model("microsoft/resnet-50", LABELS, 32, tmp_path)
    assert str(raised.value).startswith(
        "MRI_MODEL_SOURCE 'microsoft/resnet-50' is a HuggingFace hub id and the hub is switched off here "
        "(HF_HUB_OFFLINE=1)"
    )
    assert "set MRI_MODEL_SOURCE to it, or use config:resnet-tiny" in str(raised.value)


def test_production_falls_back_to_the_demo_config_until_a_bundle_is_promoted(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="include.ml.source"):
        base = load_base_model("production", LABELS, 32, tmp_path / "production")
    assert base.description == "config:resnet-tiny"
    assert "no bundle is promoted at" in caplog.text


def test_production_and_local_folders_load_the_saved_model_with_the_project_labels(tmp_path):
    model = tiny_resnet(seed=3)
    save_model(model, build_processor(48), tmp_path / "production" / "current", {"model_id": "ft-1"})
    images, _ = toy_images(4, seed=0)

    base = load_base_model("production", LABELS, 32, tmp_path / "production")
    assert base.description == "production:ft-1"
    assert base.model.config.id2label == {0: "glioma", 1: "meningioma"}
    assert base.processor.size == {"shortest_edge": 32}  # the configured size for every source
    np.testing.assert_array_equal(
        predict_proba(base.model, build_processor(32), images), predict_proba(model, build_processor(32), images)
    )
    fresh = load_base_model(str(tmp_path / "production" / "current"), LABELS, 32, tmp_path, fresh_head=True)
    assert not torch.equal(fresh.model.classifier[1].weight, model.classifier[1].weight)


def test_model_source_settings_accept_the_named_configs_only():
    assert load_settings({}).model_source == "config:resnet-tiny"
    assert load_settings({"MRI_MODEL_SOURCE": "config:resnet-50"}).model_source == "config:resnet-50"
    with pytest.raises(ConfigError, match="MRI_MODEL_SOURCE='config:resnet50' names no known config"):
        load_settings({"MRI_MODEL_SOURCE": "config:resnet50"})


def test_the_training_settings_defaults_are_the_train_config_defaults():
    cfg, defaults = load_settings({}), TrainConfig()
    assert (cfg.train_epochs, cfg.train_batch_size, cfg.train_learning_rate, cfg.train_image_size) == (
        defaults.epochs,
        defaults.batch_size,
        defaults.learning_rate,
        defaults.image_size,
    )
    assert json.loads(json.dumps(cfg.train_sweep)) == list(cfg.train_sweep)


def test_fine_tuning_from_production_reads_one_release_even_if_a_promotion_switches_current(tmp_path, monkeypatch):
    import include.ml.bundle

    production = tmp_path / "production"
    releases = {name: production / "releases" / name for name in ("ft-a", "ft-b")}
    models = {name: tiny_resnet(seed=seed) for seed, name in enumerate(releases)}
    for name, folder in releases.items():
        save_model(models[name], build_processor(32), folder, {"model_id": name})
    current = production / "current"
    current.symlink_to(releases["ft-a"])
    read_metadata = include.ml.bundle.read_metadata

    def promote_b_after_reading(directory):
        metadata = read_metadata(directory)
        # A promotion lands between the metadata and the weights: the real symlink switch.
        switched = production / "current.next"
        switched.symlink_to(releases["ft-b"])
        switched.replace(current)
        return metadata

    monkeypatch.setattr(include.ml.bundle, "read_metadata", promote_b_after_reading)
    base = load_base_model("production", LABELS, 32, production)

    assert current.resolve() == releases["ft-b"]
    assert base.description == "production:ft-a"
    assert torch.equal(base.model.classifier[1].weight, models["ft-a"].classifier[1].weight)
