"""Fine-tune an image classifier, top to bottom: config, data, model, optimizer, loop, validation,
checkpoint. One progress line per epoch (loss, accuracy, validation AUC, images/s) and one every
``log_every`` batches.

The defaults are the demo's recipe measured on the phantom set with subjects (README, "Training
and evaluation"): AdamW at 2e-3 with weight decay 0.05, half an epoch of warm-up then cosine decay,
light augmentation (flips, small affine warps; a gain, bias field and noise per image), 50 epochs
at 160 px. The best epoch by validation ROC AUC (then loss) is kept; ``patience`` epochs without a
better one stop the run early.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from include.ml import METRIC_NAMES
from include.ml.bundle import save_model
from include.ml.data import (
    augment,
    augment_intensity,
    holdout_keys,
    processor_normalisation,
    read_images,
    to_tensor,
    validation_split,
)
from include.ml.hyperparameters import TrainConfig
from include.ml.metrics import classification_metrics
from include.ml.source import load_base_model

log = logging.getLogger(__name__)


class TrainResult(NamedTuple):
    history: list[dict]  # one entry per epoch
    best_epoch: int
    validation: dict  # the kept epoch's validation metrics, METRIC_NAMES (empty without a validation split)
    seconds: float
    images_per_second: float


class TrainingDiverged(ArithmeticError):
    """The training or validation loss became NaN or infinite; the message gives the step and what to lower."""


def learning_rate_at(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    """Linear warm-up to ``peak``, then cosine decay to zero at ``total_steps``."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _validate(model: Any, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict:
    model.eval()
    with torch.inference_mode():
        logits = torch.cat([model(pixel_values=x[i : i + batch_size]).logits for i in range(0, len(x), batch_size)])
    loss = float(F.cross_entropy(logits.float(), y))
    if not math.isfinite(loss):  # the caller stops the run: no score is read from NaN outputs
        return {"loss": loss, "roc_auc": None}
    metrics = classification_metrics(y.numpy(), torch.softmax(logits.float(), dim=-1).numpy())
    # Every metric a sweep can be ranked by; the loss as the run minimises it (unclipped).
    return {**{name: metrics[name] for name in METRIC_NAMES}, "loss": loss}


def fine_tune(
    model: Any,
    processor: Any,
    images: list,
    targets: Sequence[int],
    config: TrainConfig,
    keys: Sequence[str] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``images`` (RGB PIL images) with class indices ``targets``.

    :param model: a ``*ForImageClassification`` model whose head has one output per class.
    :param processor: its image processor (resizes and normalises; the same one evaluation uses).
    :param images: the training images, decoded (see ``predict.open_image``).
    :param targets: the class index of each image.
    :param config: the hyperparameters.
    :param keys: what decides each image's side of the validation holdout (``data.holdout_keys``: its
        subject, else its SHA-256; default: its position).
    """
    # -- data: processed once; the held-out part picks the epoch to keep
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    x_all, y_all = to_tensor(processor, images), torch.as_tensor(list(targets), dtype=torch.long)
    keys = list(keys) if keys is not None else [str(i) for i in range(len(images))]
    train_idx, val_idx = validation_split(keys, targets, config.validation_fraction, config.seed)
    x, y = x_all[train_idx], y_all[train_idx]
    x_val, y_val = x_all[val_idx], y_all[val_idx]
    # The processor's (mean, std), to augment intensities on the [0, 1] image; read before the first
    # step, so a processor that cannot give them fails at once.
    normalisation = processor_normalisation(processor) if config.augment and config.augment_intensity else None
    log.info("Training on %s images, validating on %s; %s", len(x), len(x_val), config)

    # -- model and optimizer
    if config.freeze_backbone:
        for parameter in model.base_model.parameters():
            parameter.requires_grad = False
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = max(1, round(config.warmup_epochs * steps_per_epoch))

    # -- loop
    history, best, best_state, kept_validation, step, start = [], None, None, {}, 0, time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        epoch_start, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
        order = torch.randperm(len(x), generator=generator)
        for batch_number, first in enumerate(range(0, len(x), config.batch_size), start=1):
            index = order[first : first + config.batch_size]
            if len(index) < 2:  # batch norm cannot normalise a single image
                continue
            xb, yb = x[index], y[index]
            if config.augment:
                xb = augment(xb, generator)
            if normalisation is not None:
                xb = augment_intensity(xb, generator, *normalisation)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, total_steps, warmup_steps, config.learning_rate)
            logits = model(pixel_values=xb).logits
            loss = F.cross_entropy(logits, yb)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"Loss is {loss.item()} at epoch {epoch}, batch {batch_number} (learning rate "
                    f"{optimizer.param_groups[0]['lr']:.3g}): training diverged. Lower learning_rate "
                    f"(now {config.learning_rate}) in the sweep or MRI_TRAIN_LEARNING_RATE."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            # Accumulated per image, so the epoch's loss is the real mean over what was seen.
            loss_sum += loss.item() * len(index)
            correct += int((logits.argmax(dim=1) == yb).sum())
            seen += len(index)
            if batch_number % config.log_every == 0:
                log.info("epoch %s batch %s/%s loss %.4f", epoch, batch_number, steps_per_epoch, loss_sum / seen)
        seconds = time.perf_counter() - epoch_start
        validation = _validate(model, x_val, y_val, config.batch_size) if len(x_val) else {}
        if validation and not math.isfinite(validation["loss"]):
            # Finite training losses (batch statistics) with NaN outputs at inference (running ones):
            # the model diverged as surely as a NaN training loss says, and no epoch of it is kept.
            raise TrainingDiverged(
                f"Validation loss is {validation['loss']} at epoch {epoch} (training loss "
                f"{loss_sum / max(seen, 1):.4g}, learning rate {optimizer.param_groups[0]['lr']:.3g}): training "
                f"diverged. Lower learning_rate (now {config.learning_rate}) in the sweep or MRI_TRAIN_LEARNING_RATE."
            )
        record = {
            "epoch": epoch,
            "loss": loss_sum / max(seen, 1),
            "accuracy": correct / max(seen, 1),
            "val_loss": validation.get("loss"),
            "val_roc_auc": validation.get("roc_auc"),
            "images_per_second": seen / seconds,
        }
        history.append(record)
        log.info(
            "epoch %s/%s loss %.4f accuracy %.3f val_loss %s val_roc_auc %s %.0f images/s",
            epoch,
            config.epochs,
            record["loss"],
            record["accuracy"],
            f"{record['val_loss']:.4f}" if record["val_loss"] is not None else "-",
            f"{record['val_roc_auc']:.4f}" if record["val_roc_auc"] is not None else "-",
            record["images_per_second"],
        )

        # -- keep the best epoch: validation AUC first, then validation loss (AUC saturates at 1.0)
        if validation:
            score = (validation["roc_auc"] if validation["roc_auc"] is not None else -1.0, -validation["loss"])
            if best is None or score > best[0]:
                best, best_state = (score, epoch), copy.deepcopy(model.state_dict())
                kept_validation = validation
            elif config.patience and epoch - best[1] >= config.patience:
                log.info("No better validation score for %s epochs: stopping after epoch %s", config.patience, epoch)
                break

    if best_state is not None:
        model.load_state_dict(best_state)
    best_epoch = best[1] if best else len(history)
    kept = history[best_epoch - 1]
    seconds = time.perf_counter() - start
    images = len(train_idx) * len(history)
    log.info(
        "Kept epoch %s of %s (val_roc_auc %s) after %.1f s", best_epoch, len(history), kept["val_roc_auc"], seconds
    )
    return TrainResult(
        history,
        best_epoch,
        kept_validation,
        seconds,
        images / seconds,
    )


def train_and_save(
    items: Sequence[tuple[str, ...]],
    read: Callable[[str], bytes],
    labels: tuple[str, ...],
    source: str,
    config: TrainConfig,
    directory: Path,
    metadata: dict,
    production_dir: Path,
) -> dict:
    """Load the base model, fine-tune it on ``items``, save the bundle to ``directory``.

    What a fine-tune task calls. Returns a small JSON-able summary (no tensors).

    :param items: the gated snapshot's ``(uri, label, sha256[, subject])`` members: each file is
        checked against its recorded SHA-256 as it is read (``data.ContentChanged`` names the file
        otherwise); a subject's images are held out for validation or trained on together.
    :param read: returns a URI's bytes through the storage layer.
    :param labels: the classes, in output order.
    :param source: MRI_MODEL_SOURCE.
    :param config: the hyperparameters.
    :param directory: where the bundle goes (temp folder, then rename: all or nothing).
    :param metadata: facts to keep with the model (model id, train snapshot, run id).
    :param production_dir: MRI_PRODUCTION_DIR, for ``source == "production"``.
    """
    data = read_images(items, read, labels)
    base = load_base_model(source, labels, config.image_size, production_dir, seed=config.seed)
    result = fine_tune(base.model, base.processor, data.images, data.targets, config, holdout_keys(items))
    summary = {
        "base_model": base.description,
        "hyperparameters": dataclasses.asdict(config),
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "validation": result.validation,
        "train_seconds": round(result.seconds, 2),
        "images_per_second": round(result.images_per_second, 1),
        "train_images": len(items),
        "label_counts": {label: data.targets.count(i) for i, label in enumerate(labels)},
        # The numbers depend on it from the first epoch (the library versions are in `libraries`).
        "torch_threads": torch.get_num_threads(),
    }
    save_model(base.model, base.processor, directory, {**metadata, **summary, "history": result.history})
    return {**summary, "path": str(directory)}


def build_baseline(
    source: str,
    labels: tuple[str, ...],
    image_size: int,
    seed: int,
    directory: Path,
    metadata: dict,
    production_dir: Path,
) -> dict:
    """Save the base model with a freshly initialised head, untrained: the reference a fine-tuned
    model must beat. Returns its ``base_model`` description and path."""
    base = load_base_model(source, labels, image_size, production_dir, seed=seed, fresh_head=True)
    facts = {"base_model": base.description, "hyperparameters": {"image_size": image_size, "seed": seed}}
    save_model(base.model, base.processor, directory, {**metadata, **facts})
    return {**facts, "path": str(directory)}
