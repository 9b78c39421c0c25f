"""Classify image files with the production model: ``make predict IMAGES="a.jpg b.png"``.

``python -m launcher.predict [--json] [--bundle DIR] [--] FILES...`` loads ``<MRI_PRODUCTION_DIR>/current``
(the bundle deploy_best_model promoted) and prints each file's class probabilities: a table for
people, JSON for machines. The same two functions as evaluation (``include.ml.predict.open_image``
and ``predict_proba``) turn bytes into probabilities, so a served prediction is what evaluation
measured. It reads files and the bundle only: no Airflow, no registry, no network.

``current`` is resolved once, and every file of the bundle is read from that release folder, so a
promotion meanwhile cannot mix two releases. A FILE may be a folder (its ``.jpg``, ``.jpeg`` and
``.png`` files); anything that is not a regular file (a named pipe, a device) is refused unopened;
an image whose header declares more than MRI_MAX_IMAGE_PIXELS pixels is refused undecoded.

``make predict`` hands the names over in the environment (``--images-env IMAGES``), never as shell
words: a name with spaces, parentheses, quotes or ``$(...)`` is a name, and ``--bundle=DIR`` is a file.

Exit status: 0 all files classified; 1 some files could not be read (the others are still
classified, and each bad file is named with the reason); 2 no usable bundle (missing, incomplete,
damaged), no files, or a bad option.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import stat
import sys
from pathlib import Path
from typing import Any, TextIO

from include.config import ConfigError, settings
from include.ml.bundle import MEMORY_ADDRESS, label_names
from include.storage.base import kind_of  # what a non-regular file is, in ingestion's words

# What a folder given as a FILE contributes: its images by suffix (the formats ingestion takes).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class PredictError(RuntimeError):
    """No usable bundle; the message names the setting and the fix."""


def bundle_path(explicit: str | None = None) -> Path:
    """``--bundle`` if given, else the served bundle ``<MRI_PRODUCTION_DIR>/current``."""
    return Path(explicit) if explicit else Path(settings().production_dir) / "current"


def names_from_env(value: str) -> list[str]:
    """The file names in an environment variable's value (how ``make predict`` passes IMAGES).

    One name per line where there are several lines; else the whole value where it names an
    existing file or folder (``glioma (1).jpg``); else words split as a shell would split them,
    quotes included (``"glioma (1).jpg" b.png``), without running anything.
    """
    if "\n" in value:
        return [line for line in value.splitlines() if line.strip()]
    if not value.strip():
        return []
    if os.path.lexists(value):
        return [value]
    try:
        return shlex.split(value)
    except ValueError:  # an unbalanced quote: then it is one name, reported if it does not exist
        return [value]


def expand_folders(names: list[str]) -> list[str]:
    """Each name, with a folder replaced by its image files (sorted, hidden ones left out)."""
    expanded = []
    for name in names:
        if os.path.isdir(name):
            found = sorted(
                entry.path
                for entry in os.scandir(name)
                if not entry.name.startswith(".") and entry.name.lower().endswith(IMAGE_SUFFIXES)
            )
            expanded.extend(found or [name])  # an empty folder is reported as one bad name
        else:
            expanded.append(name)
    return expanded


def read_image_file(name: str) -> bytes:
    """The bytes of the regular file ``name`` (a symlink is followed to one). Anything else (a
    named pipe, which would block forever, a device, a socket) is refused without being opened.

    :raises OSError: the file cannot be read; its ``strerror`` is the reason.
    """
    mode = os.lstat(name).st_mode
    if stat.S_ISLNK(mode):
        mode = os.stat(name).st_mode
    if stat.S_ISDIR(mode):
        raise OSError(f"a folder with no {', '.join(IMAGE_SUFFIXES)} files in it")
    if not stat.S_ISREG(mode):
        raise OSError(f"not a regular file: {kind_of(mode)}")
    # O_NONBLOCK: a file swapped for a named pipe since the check cannot block the open either.
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(f"not a regular file: {kind_of(mode)}")
        return handle.read()


def decode_error(err: Exception) -> str:
    """Why PIL could not decode a file, in one line without memory addresses."""
    from PIL import UnidentifiedImageError

    if isinstance(err, UnidentifiedImageError):  # its message names a BytesIO at a memory address
        return "not an image PIL can decode (UnidentifiedImageError: no image format PIL knows)"
    text = MEMORY_ADDRESS.sub("", " ".join(str(err).split()))
    return f"not an image PIL can decode ({type(err).__name__}: {text})"


def open_image_files(
    paths: list[str], max_pixels: int | None = None
) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    """(file, RGB image) for each readable file and (file, reason) for each that is not.

    :param max_pixels: refuse images whose header declares more pixels (MRI_MAX_IMAGE_PIXELS).
    """
    from include.ml.predict import ImageTooLarge, open_image

    images, errors = [], []
    for name in paths:
        try:
            data = read_image_file(name)
        except OSError as err:
            errors.append((name, f"cannot read the file: {err.strerror or err}"))
            continue
        try:
            images.append((name, open_image(data, max_pixels=max_pixels)))
        except ImageTooLarge as err:
            errors.append((name, str(err)))
        except Exception as err:  # PIL raises several types for bytes that are not an image
            errors.append((name, decode_error(err)))
    return images, errors


def load_bundle(path: Path):
    """The model, processor and deployment record of the bundle at ``path``, all read from one
    folder: ``path`` with its symlinks (``current``) resolved once. PredictError if there is none."""
    from include.ml.bundle import BundleError, load_model, read_deployment

    if not path.exists():
        raise PredictError(
            f"No production bundle at {path}. deploy_best_model publishes <MRI_PRODUCTION_DIR>/current when it "
            f"promotes a model (MRI_PRODUCTION_DIR={settings().production_dir}); run the pipeline until a model "
            "is promoted (make demo), point MRI_PRODUCTION_DIR at a folder that has current/, or pass --bundle DIR."
        )
    try:
        loaded = load_model(path)
        record = read_deployment(loaded.directory)
    except BundleError as err:
        raise PredictError(str(err)) from None
    return loaded, record


def classify(loaded: Any, images: list[tuple[str, Any]], batch_size: int) -> tuple[list[str], list[list[float]]]:
    """Class names (index order) and one row of probabilities per image."""
    from include.ml.predict import predict_proba

    labels = label_names(loaded.model.config.id2label)
    if not images:
        return labels, []
    probabilities = predict_proba(loaded.model, loaded.processor, [image for _, image in images], batch_size)
    return labels, probabilities.tolist()


def write_table(out: TextIO, record: dict, labels: list[str], rows: list, errors: list, release: Path) -> None:
    model = record.get("model_id") or release.name
    chosen = f", {record['metric']} {record['value']:.4f} on the test snapshot" if record.get("metric") else ""
    out.write(f"Model {model} ({release}{chosen})\n")
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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number (e.g. 32)")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m launcher.predict",
        description="Class probabilities of image files from the production model. Exit 0: all classified; "
        "1: some files could not be read; 2: no usable bundle, no files, or a bad option.",
    )
    parser.add_argument(
        "files",
        nargs="*",
        help="image files (JPEG, PNG; grayscale, 16-bit, RGBA are converted) or folders of them; "
        "put them after -- if a name may start with -",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--bundle", help="a bundle folder instead of <MRI_PRODUCTION_DIR>/current")
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, help="images per forward pass, at least 1 (default 32)"
    )
    parser.add_argument(
        "--images-env",
        metavar="VAR",
        help="also classify the files named in environment variable VAR: one per line, or one file or folder, "
        "or names split as a shell would ('\"glioma (1).jpg\" b.png'), never run by a shell "
        "(how make predict passes IMAGES)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command line; return the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    args = parse_args(argv)
    try:
        max_pixels = settings().max_image_pixels
    except ConfigError as error:
        err.write(f"error: {error}\n")
        return 2
    names = list(args.files)
    if args.images_env:
        names += names_from_env(os.environ.get(args.images_env, ""))
    if not names:
        err.write(
            'No image files given. Usage: make predict IMAGES="a.jpg b.png" (a file, a folder, or names one per '
            "line) or python -m launcher.predict FILES\n"
        )
        return 2
    bundle = bundle_path(args.bundle)
    try:
        loaded, record = load_bundle(bundle)
    except PredictError as error:
        err.write(f"error: {error}\n")
        return 2
    images, errors = open_image_files(expand_folders(names), max_pixels=max_pixels)
    labels, probabilities = classify(loaded, images, args.batch_size)
    rows = [(name, row) for (name, _), row in zip(images, probabilities, strict=True)]
    if args.json:
        predictions = [
            {"file": name, "probabilities": dict(zip(labels, row, strict=True)), "label": labels[row.index(max(row))]}
            for name, row in rows
        ] + [{"file": name, "error": reason} for name, reason in errors]
        result = {"bundle": str(bundle), "release": str(loaded.directory), "model": record, "predictions": predictions}
        json.dump(result, out, indent=2)
        out.write("\n")
    else:
        write_table(out, record, labels, rows, errors, loaded.directory)
    for name, reason in errors:
        err.write(f"error: {name}: {reason}\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
