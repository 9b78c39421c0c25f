"""The base model named by ``MRI_MODEL_SOURCE``, with a head for the project's labels. No downloads:

- ``config:<name>``: a ResNet built from a named config (``architectures.NAMED_CONFIGS``), random init;
- a local folder holding a HuggingFace checkpoint (``save_pretrained`` layout);
- ``production``: the promoted bundle ``<production_dir>/current``, so new data fine-tunes the model
  in production; until one is promoted, the demo default config, with a log line;
- a hub id (``microsoft/resnet-50``): only where a hub is reachable; offline it fails with a message
  saying how to point at a local copy instead.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from include.ml.architectures import NAMED_CONFIGS, checked_architecture
from include.ml.bundle import missing_files

log = logging.getLogger(__name__)

DEFAULT_CONFIG_SOURCE = "config:resnet-tiny"
PRODUCTION = "production"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelSourceError(ValueError):
    """MRI_MODEL_SOURCE names no model that can be loaded here; the message says what to set."""


class BaseModel(NamedTuple):
    model: Any
    processor: Any
    # What the model was built from, for the `models.base_model` column: `config:resnet-tiny`,
    # a folder, or `production:<model_id>`.
    description: str


def label_maps(labels: tuple[str, ...]) -> dict:
    return {"id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}


def build_processor(image_size: int) -> Any:
    """Resize to ``image_size`` square and normalise to [-1, 1].

    ``crop_pct=1.0``: the ResNet default (0.875) center-crops about 6% off each side, and
    meningiomas sit at the skull's edge. The PIL backend: torchvision is not installed.
    """
    from transformers import ConvNextImageProcessorPil

    return ConvNextImageProcessorPil(size={"shortest_edge": image_size}, crop_pct=1.0)


def _from_config(name: str, labels: tuple[str, ...], seed: int) -> Any:
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    if name not in NAMED_CONFIGS:
        raise ModelSourceError(
            f"MRI_MODEL_SOURCE 'config:{name}' names no known config; use one of "
            f"{', '.join('config:' + n for n in NAMED_CONFIGS)}, a local checkpoint folder, or 'production'."
        )
    torch.manual_seed(seed)  # the same source and seed give the same initial weights
    config = ResNetConfig(**checked_architecture(NAMED_CONFIGS[name], f"config:{name}"), **label_maps(labels))
    return ResNetForImageClassification(config)


def _from_pretrained(location: str, labels: tuple[str, ...], local: bool) -> tuple[Any, Any]:
    from transformers import AutoImageProcessor, AutoModelForImageClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # A checkpoint with another head (1000 ImageNet classes, or other labels) gets a new one.
    # Safetensors only: a pickled pytorch_model.bin can run code when it is loaded.
    model = AutoModelForImageClassification.from_pretrained(
        location, local_files_only=local, ignore_mismatched_sizes=True, use_safetensors=True, **label_maps(labels)
    )
    try:
        processor = AutoImageProcessor.from_pretrained(location, local_files_only=local, backend="pil")
    except OSError:  # a checkpoint saved without its processor: ours is the one that matches training
        processor = None
    return model, processor


def _offline() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _from_hub(hub_id: str, labels: tuple[str, ...]) -> tuple[Any, Any]:
    try:
        return _from_pretrained(hub_id, labels, local=_offline())
    except OSError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        why = (
            "the hub is switched off here (HF_HUB_OFFLINE=1) and the model is not in the local cache"
            if _offline()
            else f"it could not be fetched ({first_line})"
        )
        folder = f"/models/{hub_id.split('/')[-1]}"
        raise ModelSourceError(
            f"MRI_MODEL_SOURCE {hub_id!r} is a HuggingFace hub id and {why}; the pipeline downloads nothing at "
            f"run time. Where a hub is reachable, run `hf download {hub_id} --local-dir {folder}`, copy the folder "
            f"here and set MRI_MODEL_SOURCE to it, or use {DEFAULT_CONFIG_SOURCE}."
        ) from err


def load_base_model(
    source: str, labels: tuple[str, ...], image_size: int, production_dir: Path, seed: int = 0, fresh_head: bool = False
) -> BaseModel:
    """The model to fine-tune (or to evaluate as the baseline) and the processor that feeds it.

    :param source: the value of MRI_MODEL_SOURCE.
    :param labels: the classes, in output order (MRI_LABELS).
    :param image_size: the side, in pixels, the processor resizes to (MRI_IMAGE_SIZE).
    :param production_dir: MRI_PRODUCTION_DIR; ``production`` loads ``<production_dir>/current``.
    :param seed: seeds the random initial weights.
    :param fresh_head: re-initialise the classifier even where a checkpoint has one that fits (the
        baseline: the base model with an untrained head).
    """
    import torch

    source = source.strip()
    description = source
    if source == PRODUCTION:
        current = Path(production_dir) / "current"
        if missing_files(current):
            log.warning(
                "MRI_MODEL_SOURCE=production but no bundle is promoted at %s yet: starting from %s instead",
                current,
                DEFAULT_CONFIG_SOURCE,
            )
            source = description = DEFAULT_CONFIG_SOURCE
        else:
            from include.ml.bundle import read_metadata

            # `current` is a symlink a promotion switches: resolve it once so the metadata and the
            # weights come from the same release, whatever is promoted meanwhile.
            release = current.resolve()
            source = str(release)
            description = f"production:{read_metadata(release).get('model_id', release)}"

    processor = None
    if source.startswith("config:"):
        model = _from_config(source.removeprefix("config:"), labels, seed)
    elif Path(source).expanduser().is_dir():
        missing = [name for name in ("config.json",) if not (Path(source) / name).is_file()]
        if missing:
            raise ModelSourceError(
                f"MRI_MODEL_SOURCE {source!r} is a folder without config.json: not a HuggingFace checkpoint. "
                "Point it at a folder written by save_pretrained, or use a config:<name>."
            )
        torch.manual_seed(seed)
        model, processor = _from_pretrained(str(Path(source).expanduser()), labels, local=True)
    elif HUB_ID.match(source):
        torch.manual_seed(seed)
        model, processor = _from_hub(source, labels)
    else:
        raise ModelSourceError(
            f"MRI_MODEL_SOURCE {source!r} is neither config:<name> ({', '.join(NAMED_CONFIGS)}), an existing "
            "folder, 'production', nor a hub id (owner/name). Fix the value or create the folder."
        )

    if fresh_head:
        torch.manual_seed(seed)
        for layer in model.classifier.modules():
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
    if processor is None:
        processor = build_processor(image_size)
    # Every source is fed the same way: the configured size, nothing cropped off the edges.
    processor.size = {"shortest_edge": image_size}
    processor.crop_pct = 1.0
    return BaseModel(model, processor, description)
