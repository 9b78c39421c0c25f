"""`make predict` / `python -m launcher.predict` against what goes wrong in practice: damaged or
pickled weights, a promotion mid-load, a named pipe, a decompression bomb, bad options, and file
names that a shell would run. Each test failed on the launcher before these were handled."""

import io
import json
import os
import subprocess
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from include.config import settings
from include.deploy.releases import LocalBundles
from include.ml.bundle import DEPLOYMENT_FILE
from include.registry.records import Limits, Quarantine, inspect_image
from launcher import predict as cli
from launcher.predict import main
from tests.support.tiny_models import production_with_one_release, served_bundle, tiny_resnet

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def production(tmp_path_factory) -> Path:
    return production_with_one_release(tmp_path_factory.mktemp("production"))


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "slice.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 48), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def fresh_settings(monkeypatch):
    """Settings read again from the environment this test sets, and again after it."""
    monkeypatch.delenv("MRI_MAX_IMAGE_PIXELS", raising=False)
    settings.cache_clear()
    yield monkeypatch
    settings.cache_clear()


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


# 1. Damaged weights: exit 2 and one line naming the file and the fix, not a traceback.


def test_truncated_weights_exit_2_with_one_line_naming_the_file_and_the_fix(tmp_path, image):
    bundle = served_bundle(tmp_path / "bundle")
    weights = bundle / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    status, out, err = run("--bundle", str(bundle), str(image))

    assert status == 2 and out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: Model bundle file {weights.resolve()} is damaged (truncated or not safetensors: ")
    assert "restore the bundle from the model's folder <MRI_MODELS_DIR>/<model_id>" in err


def test_a_damaged_deployment_record_exits_2_naming_the_file(tmp_path, image):
    bundle = served_bundle(tmp_path / "bundle")
    (bundle / DEPLOYMENT_FILE).write_text('{"model_id": ')

    status, _, err = run("--bundle", str(bundle), str(image))

    assert status == 2 and err.count("\n") == 1
    assert err.startswith(f"error: Model bundle file {(bundle / DEPLOYMENT_FILE).resolve()} is damaged (not valid JSON")


# 7. Safetensors only: pickled weights are never loaded.


def test_a_bundle_with_only_pickled_weights_is_refused_with_the_reason(tmp_path, image):
    import torch

    bundle = served_bundle(tmp_path / "bundle")
    torch.save(tiny_resnet(3).state_dict(), bundle / "pytorch_model.bin")
    (bundle / "model.safetensors").unlink()

    status, _, err = run("--bundle", str(bundle), str(image))

    assert status == 2 and err.count("\n") == 1
    assert f"error: Model bundle {bundle} has only pytorch_model.bin (pickled weights: loading one can run" in err
    assert "only safetensors weights are loaded" in err


def test_weights_are_loaded_with_use_safetensors(production, image, monkeypatch):
    from transformers import AutoModelForImageClassification

    original, calls = AutoModelForImageClassification.from_pretrained, []

    def spy(path, **kwargs):
        calls.append(kwargs)
        return original(path, **kwargs)

    monkeypatch.setattr(AutoModelForImageClassification, "from_pretrained", spy)

    assert run("--bundle", str(production / "current"), str(image))[0] == 0
    assert [call.get("use_safetensors") for call in calls] == [True]


# 4. `current` is resolved once: a promotion between two reads cannot mix two releases.


def test_a_promotion_in_the_middle_of_loading_cannot_mix_two_releases(tmp_path, image, fresh_settings):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from include.ml.bundle import load_model
    from include.ml.predict import open_image, predict_proba

    bundles = LocalBundles(tmp_path / "production")
    first = served_bundle(bundles.release_dir("r1"), seed=3, model_id="m-one", size=32)
    served_bundle(bundles.release_dir("r2"), seed=4, model_id="m-two", size=40)
    bundles.switch("r1")
    reference = load_model(first)
    expected = predict_proba(reference.model, reference.processor, [open_image(image.read_bytes())])
    fresh_settings.setenv("MRI_PRODUCTION_DIR", str(bundles.root))
    settings.cache_clear()
    model_from, processor_from = AutoModelForImageClassification.from_pretrained, AutoImageProcessor.from_pretrained
    opened = []

    def model_then_promote(path, **kwargs):  # the weights are read, then r2 is promoted
        opened.append(Path(path))
        model = model_from(path, **kwargs)
        bundles.switch("r2")
        return model

    def processor(path, **kwargs):
        opened.append(Path(path))
        return processor_from(path, **kwargs)

    fresh_settings.setattr(AutoModelForImageClassification, "from_pretrained", model_then_promote)
    fresh_settings.setattr(AutoImageProcessor, "from_pretrained", processor)

    status, out, err = run("--json", str(image))

    assert status == 0, err
    result = json.loads(out)
    assert opened == [first.resolve(), first.resolve()]
    assert result["bundle"] == str(bundles.current) and result["release"] == str(first.resolve())
    assert result["model"]["model_id"] == "m-one"  # r1's deployment.json, not the r2 promoted meanwhile
    got = [result["predictions"][0]["probabilities"][label] for label in ("glioma", "meningioma")]
    np.testing.assert_allclose(got, expected[0], rtol=0, atol=1e-6)  # r1's weights AND r1's processor (32 px)
    assert os.readlink(bundles.current) == "releases/r2"


# 2. A named pipe is refused unopened; it does not hang the command.


def test_a_named_pipe_is_refused_unopened_instead_of_hanging(tmp_path, production, image):
    pipe = tmp_path / "slice.png"
    os.mkfifo(pipe)
    link = tmp_path / "link.png"
    link.symlink_to(pipe)
    done = {}

    def classify():
        argv = ["--json", "--bundle", str(production / "current"), str(pipe), str(link), str(image)]
        done["status"], done["out"], done["err"] = run(*argv)

    worker = threading.Thread(target=classify, daemon=True)

    worker.start()
    worker.join(timeout=60)
    hung = worker.is_alive()
    for _ in range(10):  # the old code blocks in open(): give it writers so the thread ends
        if not worker.is_alive():
            break
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=2)

    assert not hung, "launcher.predict blocked on a named pipe"
    assert done["status"] == 1
    reason = "cannot read the file: not a regular file: a named pipe (FIFO)"
    assert json.loads(done["out"])["predictions"][1:] == [
        {"file": str(pipe), "error": reason},
        {"file": str(link), "error": reason},
    ]
    assert f"error: {pipe}: {reason}\n" in done["err"]


# 3. MRI_MAX_IMAGE_PIXELS is applied from the header, before any pixel is decoded.


def sixteen_bit_png(width: int, height: int) -> bytes:
    """A valid all-black 16-bit grayscale PNG, compressed to a few hundred kilobytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([16, 0, 0, 0, 0])
    compressor, row = zlib.compressobj(9), bytes(1 + 2 * width)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_an_image_over_MRI_MAX_IMAGE_PIXELS_is_refused_from_its_header_undecoded(tmp_path, production, fresh_settings):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(sixteen_bit_png(9000, 9000))
    assert bomb.stat().st_size < 1_000_000
    # The registry checked an image in this process first, with a lower limit: that must not lower
    # PIL's own, process-wide one under predict (it did, and predict then gave PIL's message).
    pil_limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(Quarantine, match="over MRI_MAX_IMAGE_PIXELS=100"):
        inspect_image(sixteen_bit_png(20, 20), Limits(min_side=1, max_pixels=100))
    assert Image.MAX_IMAGE_PIXELS == pil_limit

    def no_decoding(self):
        raise AssertionError("decoded an image over MRI_MAX_IMAGE_PIXELS")

    fresh_settings.setattr(ImageFile.ImageFile, "load", no_decoding)

    status, _, err = run("--bundle", str(production / "current"), str(bomb))

    assert status == 1
    assert err == (
        f"error: {bomb}: too large: 9000x9000 = 81000000 pixels, over MRI_MAX_IMAGE_PIXELS=16777216 "
        "(refused from its header, not decoded)\n"
    )


def test_MRI_MAX_IMAGE_PIXELS_sets_the_limit(image, fresh_settings):
    fresh_settings.setenv("MRI_MAX_IMAGE_PIXELS", "2000")
    settings.cache_clear()

    images, errors = cli.open_image_files([str(image)], max_pixels=settings().max_image_pixels)

    reason = "too large: 48x48 = 2304 pixels, over MRI_MAX_IMAGE_PIXELS=2000 (refused from its header, not decoded)"
    assert images == [] and errors == [(str(image), reason)]


# 5. Messages carry no memory address; a batch size below 1 is a usage error.


def test_messages_about_bad_files_carry_no_memory_address(tmp_path, production):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    cut = tmp_path / "cut.png"
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 7).save(buffer, format="PNG")
    cut.write_bytes(buffer.getvalue()[:60])

    status, out, err = run("--bundle", str(production / "current"), str(text), str(cut))

    assert status == 1
    assert " at 0x" not in out + err and "object" not in out + err
    assert f"error: {text}: not an image PIL can decode (UnidentifiedImageError: no image format PIL knows)\n" in err


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_a_batch_size_below_one_is_a_usage_error(production, image, value, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--batch-size", value, "--bundle", str(production / "current"), str(image)])

    assert stopped.value.code == 2
    assert f"argument --batch-size: {value!r} is not a positive whole number (e.g. 32)" in capsys.readouterr().err


# 6. IMAGES are data: a file, a folder, names one per line or split as a shell would, never run.


def test_images_names_are_one_per_line_one_existing_path_or_shell_words(tmp_path):
    spaced = tmp_path / "glioma (1).jpg"
    spaced.write_bytes(b"")

    assert cli.names_from_env(f"{spaced}") == [str(spaced)]
    assert cli.names_from_env(f"a.jpg\n{spaced}\n\n--bundle=x\n") == ["a.jpg", str(spaced), "--bundle=x"]
    assert cli.names_from_env("a.jpg  b.png") == ["a.jpg", "b.png"]
    words = ["glioma (2).jpg", "it's.png", "$(touch", "pwned)"]
    assert cli.names_from_env("'glioma (2).jpg' \"it's.png\" $(touch pwned)") == words
    assert cli.names_from_env("unbalanced 'quote.png") == ["unbalanced 'quote.png"]
    assert cli.names_from_env(" ") == []


def test_a_folder_stands_for_its_images(tmp_path):
    for name in ("b.png", "a (1).JPG", ".hidden.png", "notes.txt", "c.jpeg"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "empty").mkdir()

    assert cli.expand_folders([str(tmp_path), "x.png", str(tmp_path / "empty")]) == [
        str(tmp_path / "a (1).JPG"),
        str(tmp_path / "b.png"),
        str(tmp_path / "c.jpeg"),
        "x.png",
        str(tmp_path / "empty"),
    ]
    assert cli.open_image_files([str(tmp_path / "empty")])[1] == [
        (str(tmp_path / "empty"), "cannot read the file: a folder with no .jpg, .jpeg, .png files in it")
    ]


def test_images_env_takes_a_folder_and_names_after_double_dash_are_files(production, image, tmp_path, monkeypatch):
    folder = tmp_path / "scans"
    folder.mkdir()
    Image.open(image).save(folder / "a (1).png")
    monkeypatch.setenv("IMAGES", str(folder))

    bundle = str(production / "current")
    status, out, _ = run("--json", "--bundle", bundle, "--images-env", "IMAGES", "--", "--bundle=x")

    assert status == 1
    result = json.loads(out)
    assert result["bundle"] == bundle
    assert [p["file"] for p in result["predictions"]] == [str(folder / "a (1).png"), "--bundle=x"]
    assert result["predictions"][1]["error"] == "cannot read the file: No such file or directory"


def make_predict(production: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MRI_PRODUCTION_DIR": str(production), **env}
    return subprocess.run(
        ["make", "--no-print-directory", "predict", *args], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT
    )


def test_the_readme_example_with_spaces_and_parentheses_works(production, image, tmp_path):
    path = tmp_path / "data" / "phantom" / "test" / "glioma (1).jpg"
    path.parent.mkdir(parents=True)
    Image.open(image).convert("RGB").save(path)

    done = make_predict(production, f"IMAGES={path}")

    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout.splitlines()  # the table only: make does not echo the command (JSON=1 is JSON)
    assert table[0].startswith("Model m-tiny (") and table[1].split() == ["file", "glioma", "meningioma", "prediction"]
    assert table[2].startswith(f"{path}  ") and table[2].split()[-1] in ("glioma", "meningioma")


def test_a_hostile_name_on_the_make_command_line_is_a_file_name_never_shell_words(production, image, tmp_path):
    hostile = tmp_path / 'it\'s "q" `touch ${PWNED}` $(touch ${PWNED}); é ü (1).png'
    Image.open(image).save(hostile)
    # make expands `$` in its own variables: a literal `$` is written `$$` on make's command line.
    images = str(hostile).replace("$", "$$")

    done = make_predict(production, f"IMAGES={images}", "JSON=1", PWNED=str(tmp_path / "pwned"))

    assert not (tmp_path / "pwned").exists()
    assert done.returncode == 0, done.stderr[-2000:]
    [prediction] = json.loads(done.stdout)["predictions"]
    assert prediction["file"] == str(hostile) and "label" in prediction


def test_a_name_like_an_option_is_a_file_name(production, image, tmp_path):
    other = served_bundle(tmp_path / "other", seed=5, model_id="m-other")

    done = make_predict(production, f"IMAGES={image} --bundle={other}", "JSON=1")

    assert done.returncode == 2 and "predict] Error 1" in done.stderr  # make's 2 for the launcher's 1: a bad file
    result = json.loads(done.stdout)
    assert result["bundle"] == str(production / "current") and result["model"]["model_id"] == "m-tiny"
    assert [p["file"] for p in result["predictions"]] == [str(image), f"--bundle={other}"]
    assert result["predictions"][1]["error"] == "cannot read the file: No such file or directory"


def test_hostile_names_in_the_environment_are_never_run(production, image, tmp_path):
    hostile = tmp_path / "x `touch ${PWNED}` $(touch ${PWNED}) y.png"
    Image.open(image).save(hostile)

    done = make_predict(production, "JSON=1", IMAGES=str(hostile), PWNED=str(tmp_path / "pwned"))

    assert not (tmp_path / "pwned").exists()
    assert done.returncode == 0, done.stderr[-2000:]
    assert [p["file"] for p in json.loads(done.stdout)["predictions"]] == [str(hostile)]
