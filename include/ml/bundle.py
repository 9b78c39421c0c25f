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
import re
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
WEIGHTS, WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"
WEIGHT_FILES = (WEIGHTS, WEIGHTS_INDEX)
# Pickled weights (torch.load): loading one can run code, so a bundle holding only these is refused.
PICKLE_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# The repair for a damaged or unsafe bundle, the end of every message about one.
REPAIR = (
    "restore the bundle from the model's folder <MRI_MODELS_DIR>/<model_id> (each release is a copy of it) "
    "or point the setting that named this path (MRI_MODEL_SOURCE, MRI_MODELS_DIR or MRI_PRODUCTION_DIR) at an "
    "intact bundle"
)
# The " at 0x7f..." of a default repr (``<_io.BytesIO object at 0x7f...>``): dropped from messages.
MEMORY_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class BundleError(FileNotFoundError):
    """A model folder is missing, incomplete or damaged; the one-line message names the file and the fix."""


class LoadedModel(NamedTuple):
    model: Any
    processor: Any
    metadata: dict
    # The folder every file was read from: the bundle's path with symlinks (``current``) resolved.
    directory: Path | None = None


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
    """What ``directory`` lacks to be a loadable bundle (empty when complete). Safetensors weights
    only: a folder with only ``pytorch_model.bin`` lacks its weights."""
    directory = Path(directory)
    if not directory.is_dir():
        return ["folder"]
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    return missing


def _one_line(err: BaseException) -> str:
    """``err`` as one line without memory addresses (``<object at 0x7f...>``), for a message."""
    text = " ".join(str(err).split()) or type(err).__name__
    return MEMORY_ADDRESS.sub("", text)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        reason = f"not valid JSON: {_one_line(err)}"
        raise BundleError(f"Model bundle file {path} is damaged ({reason}); {REPAIR}.") from None


def read_metadata(directory: Path) -> dict:
    """The bundle's ``mri_model.json`` (no torch needed)."""
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        raise BundleError(f"Model bundle {directory} has no {METADATA_FILE}; it was not written by save_model.")
    return _read_json(path)


def read_deployment(directory: Path) -> dict:
    """The served bundle's ``deployment.json`` (``{}`` where there is none: a bundle not promoted)."""
    path = Path(directory) / DEPLOYMENT_FILE
    return _read_json(path) if path.is_file() else {}


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of the bundle in ``directory``: ``model.safetensors``, or each shard
    its index names."""
    directory = Path(directory)
    index = directory / WEIGHTS_INDEX
    if (directory / WEIGHTS).is_file() or not index.is_file():
        return [directory / WEIGHTS]
    weight_map = _read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise BundleError(f"Model bundle file {index} is damaged (no weight_map); {REPAIR}.")
    shards = sorted(set(map(str, weight_map.values())))
    if any(Path(shard).name != shard for shard in shards):
        raise BundleError(f"Model bundle file {index} is damaged (a shard outside the bundle folder); {REPAIR}.")
    return [directory / shard for shard in shards]


def check_weights(directory: Path) -> None:
    """Read each safetensors file's header (cheap: no tensor is loaded): a truncated or foreign file
    raises BundleError naming it, where ``from_pretrained`` would raise a library error naming none."""
    from safetensors import safe_open

    for path in weight_files(directory):
        if not path.is_file():
            raise BundleError(f"Model bundle {directory} is missing the weights file {path.name}; {REPAIR}.")
        try:
            with safe_open(path, framework="pt"):
                pass
        except Exception as err:  # SafetensorError, and OSError for a file that cannot be mapped
            raise BundleError(
                f"Model bundle file {path} is damaged (truncated or not safetensors: {_one_line(err)}); {REPAIR}."
            ) from None


def load_model(directory: Path) -> LoadedModel:
    """Load a bundle written by :func:`save_model`, from local files only, safetensors weights only.

    ``directory`` is resolved once (``<production_dir>/current`` is a symlink a promotion switches),
    and every file is read from that one folder: a promotion meanwhile cannot mix two releases.
    The returned ``directory`` is that folder.

    :param directory: the bundle's folder.
    :raises BundleError: when the folder is missing, incomplete, damaged, or holds only pickled
        weights; the one-line message names the file and the fix.
    """
    given = Path(directory)
    directory = given.resolve()
    missing = missing_files(directory)
    pickled = [name for name in PICKLE_WEIGHT_FILES if (directory / name).is_file()]
    if missing and pickled and " or ".join(WEIGHT_FILES) in missing:
        raise BundleError(
            f"Model bundle {given} has only {pickled[0]} (pickled weights: loading one can run any code, so "
            "only safetensors weights are loaded). Re-save the model from a source you trust with "
            f"save_pretrained (it writes {WEIGHTS}), or {REPAIR}."
        )
    if missing:
        raise BundleError(
            f"Model bundle {given} is missing or incomplete (missing: {', '.join(missing)}). A bundle is written "
            "by include.ml.bundle.save_model (train_model, deploy_best_model); point the setting that named this "
            "path (MRI_MODEL_SOURCE, MRI_MODELS_DIR or MRI_PRODUCTION_DIR) at a complete one."
        )
    metadata = read_metadata(directory)
    check_weights(directory)
    from transformers import AutoImageProcessor, AutoModelForImageClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForImageClassification.from_pretrained(directory, local_files_only=True, use_safetensors=True)
    except Exception as err:  # a damaged config.json, weights that do not fit the config, ...
        raise BundleError(f"Model bundle {directory} cannot be loaded ({_one_line(err)}); {REPAIR}.") from None
    try:
        # The PIL backend: the torchvision one is not installed, and asking for it only logs a warning.
        processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True, backend="pil")
    except Exception as err:
        raise BundleError(
            f"Model bundle file {directory / 'preprocessor_config.json'} cannot be loaded ({_one_line(err)}); {REPAIR}."
        ) from None
    model.eval()
    return LoadedModel(model, processor, metadata, directory)
