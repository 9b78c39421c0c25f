"""`make predict` / `python -m launcher.predict` on a real served bundle: the probabilities evaluation
would compute, a readable table, JSON, and errors that say what to do. No Airflow in the process."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from launcher.predict import main
from tests.support.tiny_models import production_with_one_release

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def production(tmp_path_factory) -> Path:
    return production_with_one_release(tmp_path_factory.mktemp("production"))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """A grayscale JPEG, a 16-bit PNG, an RGBA PNG (each converted by open_image) and a name with a space."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    files = {
        "slice 1.jpg": Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)),
        "slice2.png": Image.fromarray((rng.integers(0, 4095, (48, 48)) * 16).astype(np.uint16)),
        "slice3.png": Image.fromarray(rng.integers(0, 255, (48, 48, 4), dtype=np.uint8)),
    }
    for name, image in files.items():
        image.save(folder / name)
    return {name: folder / name for name in files}


def expected_probabilities(bundle: Path, paths: list[Path]) -> np.ndarray:
    from include.ml.bundle import load_model
    from include.ml.predict import open_image, predict_proba

    loaded = load_model(bundle)
    return predict_proba(loaded.model, loaded.processor, [open_image(p.read_bytes()) for p in paths])


RUN_WITHOUT_AIRFLOW = """
import sys
from launcher.predict import main
status = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
sys.stderr.write("AIRFLOW MODULES: %s\\n" % loaded)
sys.exit(status)
"""


def test_cli_json_gives_the_probabilities_evaluation_computes_without_importing_airflow(production, images):
    paths = list(images.values())
    env = {**os.environ, "MRI_PRODUCTION_DIR": str(production), "PYTHONPATH": str(PROJECT_ROOT)}

    done = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_AIRFLOW, "--json", *map(str, paths)],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert "AIRFLOW MODULES: []" in done.stderr
    result = json.loads(done.stdout)
    assert result["model"]["model_id"] == "m-tiny"
    got = np.array([[p["probabilities"]["glioma"], p["probabilities"]["meningioma"]] for p in result["predictions"]])
    np.testing.assert_allclose(got, expected_probabilities(production / "current", paths), rtol=0, atol=1e-6)
    assert [p["file"] for p in result["predictions"]] == list(map(str, paths))


def test_table_lists_each_file_with_its_probabilities_and_prediction(production, images, monkeypatch):
    monkeypatch.setenv("MRI_PRODUCTION_DIR", str(production))
    from include.config import settings

    settings.cache_clear()
    out = io.StringIO()
    path = images["slice 1.jpg"]

    assert main([str(path)], out=out, err=io.StringIO()) == 0

    [[glioma, meningioma]] = expected_probabilities(production / "current", [path])
    header, columns, row = out.getvalue().splitlines()
    assert header.startswith("Model m-tiny (") and "roc_auc 0.9300" in header
    assert columns.split() == ["file", "glioma", "meningioma", "prediction"]
    best = "glioma" if glioma > meningioma else "meningioma"
    assert row.split()[-3:] == [f"{glioma:.4f}", f"{meningioma:.4f}", best]
    settings.cache_clear()


def test_unreadable_images_are_named_with_the_reason_and_the_rest_classified(production, images, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    out, err = io.StringIO(), io.StringIO()

    status = main(
        ["--json", "--bundle", str(production / "current"), str(images["slice2.png"]), str(text), "missing.jpg"],
        out=out,
        err=err,
    )

    assert status == 1
    predictions = json.loads(out.getvalue())["predictions"]
    assert [p["file"] for p in predictions] == [str(images["slice2.png"]), str(text), "missing.jpg"]
    assert predictions[1]["error"].startswith("not an image PIL can decode (UnidentifiedImageError")
    assert predictions[2]["error"] == "cannot read the file: No such file or directory"
    assert f"error: {text}: not an image PIL can decode" in err.getvalue()


def make_predict(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MRI_PRODUCTION_DIR": str(tmp_path / "nothing-promoted-yet")}
    return subprocess.run(
        ["make", "--no-print-directory", "predict", *args], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT
    )


def test_make_predict_without_a_promoted_model_says_how_to_get_one(tmp_path):
    done = make_predict(tmp_path, "IMAGES=a.jpg")

    assert done.returncode != 0
    assert f"error: No production bundle at {tmp_path}/nothing-promoted-yet/current." in done.stderr
    assert "run the pipeline until a model is promoted (make demo)" in done.stderr


def test_make_predict_without_images_prints_the_usage(tmp_path):
    done = make_predict(tmp_path)

    assert done.returncode != 0
    assert 'No image files given. Usage: make predict IMAGES="a.jpg b.png"' in done.stderr


def test_an_incomplete_bundle_names_what_is_missing(tmp_path):
    (tmp_path / "current").mkdir()
    err = io.StringIO()

    assert main(["--bundle", str(tmp_path / "current"), "a.jpg"], out=io.StringIO(), err=err) == 2
    assert "is missing or incomplete (missing: config.json" in err.getvalue()
