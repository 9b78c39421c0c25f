"""A model on disk: the ``save_pretrained`` layout of the model AND its image processor (so
``pipeline("image-classification", model=path)`` and ``from_pretrained`` both load it), plus
``mri_model.json``: hyperparameters, the snapshot trained on, metrics, label map, library versions.

A bundle is written to a temp folder beside its target and renamed into place, so a reader sees
a whole bundle or none, and a failed save leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

METADATA_FILE = "mri_model.json"
# The served bundle's record of what it is (written by include.deploy.assemble at promotion, read by launcher.predict).
DEPLOYMENT_FILE = "deployment.json"
# What a loadable bundle holds; weights may be one safetensors file or shards with an index.
REQUIRED_FILES = ("config.json", "preprocessor_config.json", METADATA_FILE)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class BundleError(FileNotFoundError):
    """A model folder is missing or incomplete; the message names the path and what is missing."""


class LoadedModel(NamedTuple):
    model: Any
    processor: Any
    metadata: dict


def label_names(id2label: dict) -> list[str]:
    """The class names in index order, from a model config's ``id2label`` (int or JSON string keys)."""
    return [id2label[key] for key in sorted(id2label, key=int)]


def library_versions() -> dict[str, str]:
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}


def save_model(model: Any, processor: Any, directory: Path, metadata: dict) -> Path:
    """Write the bundle to ``directory`` atomically (temp folder, then rename); return ``directory``.

    An existing bundle at ``directory`` (a retried task) is replaced whole.

    :param model: a ``*ForImageClassification`` model.
    :param processor: its image processor.
    :param directory: the bundle's folder, e.g. ``<models_dir>/<model_id>``.
    :param metadata: JSON-able facts: hyperparameters, train snapshot, metrics, ...; the label map
        and library versions are added here.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp-"))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        record = {
            **metadata,
            "id2label": {str(k): v for k, v in model.config.id2label.items()},
            "libraries": library_versions(),
            "saved_at": datetime.now(UTC).isoformat(),
        }
        (staging / METADATA_FILE).write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
        staging.chmod(0o755)  # mkdtemp makes it private; a bundle is read by other users (serving)
        if directory.exists():
            # rename() cannot replace a non-empty folder: move the old one aside first.
            retired = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.old-"))
            os.replace(directory, retired / directory.name)
            os.replace(staging, directory)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def missing_files(directory: Path) -> list[str]:
    """What ``directory`` lacks to be a loadable bundle (empty when complete)."""
    directory = Path(directory)
    if not directory.is_dir():
        return ["folder"]
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    return missing


def read_metadata(directory: Path) -> dict:
    """The bundle's ``mri_model.json`` (no torch needed)."""
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        raise BundleError(f"Model bundle {directory} has no {METADATA_FILE}; it was not written by save_model.")
    return json.loads(path.read_text())


def load_model(directory: Path) -> LoadedModel:
    """Load a bundle written by :func:`save_model`, from local files only.

    :param directory: the bundle's folder.
    :raises BundleError: when the folder is missing or incomplete.
    """
    directory = Path(directory)
    missing = missing_files(directory)
    if missing:
        raise BundleError(
            f"Model bundle {directory} is missing or incomplete (missing: {', '.join(missing)}). A bundle is written "
            "by include.ml.bundle.save_model (train_model, deploy_best_model); point the setting that named this "
            "path (MRI_MODEL_SOURCE, MRI_MODELS_DIR or MRI_PRODUCTION_DIR) at a complete one."
        )
    from transformers import AutoImageProcessor, AutoModelForImageClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModelForImageClassification.from_pretrained(directory, local_files_only=True)
    # The PIL backend: the torchvision one is not installed, and asking for it only logs a warning.
    processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True, backend="pil")
    model.eval()
    return LoadedModel(model, processor, read_metadata(directory))
