"""Classify image files with the production model: ``make predict IMAGES="a.jpg b.png"``.

``python -m launcher.predict [--json] [--bundle DIR] FILES...`` loads ``<MRI_PRODUCTION_DIR>/current``
(the bundle deploy_best_model promoted) and prints each file's class probabilities: a table for
people, JSON for machines. The same two functions as evaluation (``include.ml.predict.open_image``
and ``predict_proba``) turn bytes into probabilities, so a served prediction is what evaluation
measured. It reads files and the bundle only: no Airflow, no registry, no network.

Exit status: 0 all files classified; 1 some files could not be read (the others are still
classified, and each bad file is named with the reason); 2 no usable bundle, or no files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from include.config import settings
from include.ml.bundle import DEPLOYMENT_FILE, label_names


class PredictError(RuntimeError):
    """No usable bundle; the message names the setting and the fix."""


def bundle_path(explicit: str | None = None) -> Path:
    """``--bundle`` if given, else the served bundle ``<MRI_PRODUCTION_DIR>/current``."""
    return Path(explicit) if explicit else Path(settings().production_dir) / "current"


def open_image_files(paths: list[str]) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    """(file, RGB image) for each readable file and (file, reason) for each that is not."""
    from include.ml.predict import open_image

    images, errors = [], []
    for name in paths:
        try:
            data = Path(name).read_bytes()
        except OSError as err:
            errors.append((name, f"cannot read the file: {err.strerror or err}"))
            continue
        try:
            images.append((name, open_image(data)))
        except Exception as err:  # PIL raises several types for bytes that are not an image
            errors.append((name, f"not an image PIL can decode ({type(err).__name__}: {err})"))
    return images, errors


def load_bundle(path: Path):
    """The model, processor and deployment record in ``path``; PredictError if there is none."""
    from include.ml.bundle import BundleError, load_model

    if not path.exists():
        raise PredictError(
            f"No production bundle at {path}. deploy_best_model publishes <MRI_PRODUCTION_DIR>/current when it "
            f"promotes a model (MRI_PRODUCTION_DIR={settings().production_dir}); run the pipeline until a model "
            "is promoted (make demo), point MRI_PRODUCTION_DIR at a folder that has current/, or pass --bundle DIR."
        )
    try:
        loaded = load_model(path)
    except BundleError as err:
        raise PredictError(str(err)) from None
    record_file = path / DEPLOYMENT_FILE
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    return loaded, record


def classify(loaded: Any, images: list[tuple[str, Any]], batch_size: int) -> tuple[list[str], list[list[float]]]:
    """Class names (index order) and one row of probabilities per image."""
    from include.ml.predict import predict_proba

    labels = label_names(loaded.model.config.id2label)
    if not images:
        return labels, []
    probabilities = predict_proba(loaded.model, loaded.processor, [image for _, image in images], batch_size)
    return labels, probabilities.tolist()


def write_table(out: TextIO, record: dict, labels: list[str], rows: list, errors: list, bundle: Path) -> None:
    model = record.get("model_id") or bundle.resolve().name
    chosen = f", {record['metric']} {record['value']:.4f} on the test snapshot" if record.get("metric") else ""
    out.write(f"Model {model} ({bundle}{chosen})\n")
    width = max([len("file"), *(len(name) for name, _ in rows), *(len(name) for name, _ in errors)])
    columns = [max(len(label), 6) for label in labels]
    out.write("  ".join(["file".ljust(width), *(label.rjust(w) for label, w in zip(labels, columns, strict=True))]))
    out.write("  prediction\n")
    for name, probabilities in rows:
        cells = [f"{p:.4f}".rjust(w) for p, w in zip(probabilities, columns, strict=True)]
        best = labels[max(range(len(labels)), key=probabilities.__getitem__)]
        out.write("  ".join([name.ljust(width), *cells]) + f"  {best}\n")
    for name, reason in errors:
        out.write(f"{name.ljust(width)}  error: {reason}\n")


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command line; return the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    parser = argparse.ArgumentParser(
        prog="python -m launcher.predict", description="Class probabilities of image files from the production model."
    )
    parser.add_argument("files", nargs="*", help="image files (JPEG, PNG; grayscale, 16-bit, RGBA are converted)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--bundle", help="a bundle folder instead of <MRI_PRODUCTION_DIR>/current")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    args = parser.parse_args(argv)
    if not args.files:
        err.write(
            'No image files given. Usage: make predict IMAGES="a.jpg b.png" or python -m launcher.predict FILES\n'
        )
        return 2
    bundle = bundle_path(args.bundle)
    try:
        loaded, record = load_bundle(bundle)
    except PredictError as error:
        err.write(f"error: {error}\n")
        return 2
    images, errors = open_image_files(args.files)
    labels, probabilities = classify(loaded, images, args.batch_size)
    rows = [(name, row) for (name, _), row in zip(images, probabilities, strict=True)]
    if args.json:
        predictions = [
            {"file": name, "probabilities": dict(zip(labels, row, strict=True)), "label": labels[row.index(max(row))]}
            for name, row in rows
        ] + [{"file": name, "error": reason} for name, reason in errors]
        json.dump({"bundle": str(bundle), "model": record, "predictions": predictions}, out, indent=2)
        out.write("\n")
    else:
        write_table(out, record, labels, rows, errors, bundle)
    for name, reason in errors:
        err.write(f"error: {name}: {reason}\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
