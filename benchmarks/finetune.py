"""Fine-tune step and evaluation throughput of the operators' code path against a bare torch loop
on the same model, batch size and images. Prints a Markdown table.

    python -m benchmarks.finetune --images 192 --epochs 3 --threads 2

The operators call ``include.ml.train.fine_tune`` and ``include.ml.predict.predict_proba``; their
``execute`` adds a database read and write and a bundle save once per task, not per image. So:

- training: ``fine_tune`` (images processed once, then augmented per batch, the learning-rate
  schedule, loss accumulation, progress lines) vs a loop of forward, loss, backward, AdamW step on
  tensors already in memory, no augmentation; images/s of the steps, per epoch;
- evaluation: ``predict_proba`` on decoded PIL images (the image processor resizes and normalises
  every batch, the next batch while the model runs on this one) vs the model's forward on tensors
  already processed, and vs a plain loop that processes each batch and then runs the model; images/s.

The goal is >= 0.95 for both: the data path is never the bottleneck. Trials alternate between the
two sides and the median is reported, so load from other processes hits both alike.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np

from include.ml.hyperparameters import TrainConfig


def phantom_like_images(count: int, size: int = 256) -> tuple[list, list[int]]:
    """Grayscale slices at the phantom set's size (the compute does not depend on the content)."""
    from PIL import Image

    from include.ml.predict import open_image

    rng = np.random.default_rng(0)
    images, targets = [], []
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray((rng.random((size, size)) * 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        images.append(open_image(buffer.getvalue()))
        targets.append(i % 2)
    return images, targets


def new_model(seed: int = 0):
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    from include.ml.architectures import NAMED_CONFIGS

    torch.manual_seed(seed)
    return ResNetForImageClassification(ResNetConfig(**NAMED_CONFIGS["resnet-tiny"], num_labels=2))


def bare_training(x, y, batch_size: int, learning_rate: float) -> float:
    """One epoch of the plainest loop: images/s."""
    import torch
    import torch.nn.functional as F

    model = new_model()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.05)
    order = torch.randperm(len(x))
    start = time.perf_counter()
    for first in range(0, len(x), batch_size):
        index = order[first : first + batch_size]
        loss = F.cross_entropy(model(pixel_values=x[index]).logits, y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return len(x) / (time.perf_counter() - start)


def pipeline_training(images, targets, batch_size: int, image_size: int) -> float:
    """One epoch through ``fine_tune`` (what the fine-tune operator runs): its images/s."""
    from include.ml.source import build_processor
    from include.ml.train import fine_tune

    config = TrainConfig(
        epochs=1, batch_size=batch_size, image_size=image_size, validation_fraction=0.0, log_every=10**6
    )
    return fine_tune(new_model(), build_processor(image_size), images, targets, config).history[0]["images_per_second"]


def bare_evaluation(model, x, batch_size: int) -> float:
    import torch

    model.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(x), batch_size):
            torch.softmax(model(pixel_values=x[first : first + batch_size]).logits, dim=-1)
    return len(x) / (time.perf_counter() - start)


def bare_evaluation_from_images(model, processor, images, batch_size: int) -> float:
    """The plain loop from the same decoded images: process a batch, then run the model on it."""
    import torch

    from include.ml.predict import pixel_values

    model.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(images), batch_size):
            torch.softmax(
                model(pixel_values=pixel_values(processor, images[first : first + batch_size])).logits, dim=-1
            )
    return len(images) / (time.perf_counter() - start)


def pipeline_evaluation(model, processor, images, batch_size: int) -> float:
    from include.ml.predict import predict_proba

    start = time.perf_counter()
    predict_proba(model, processor, images, batch_size=batch_size)
    return len(images) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.finetune", description=__doc__)
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--epochs", type=int, default=3, help="trials per side (alternating)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=TrainConfig.image_size)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from include.ml.data import to_tensor
    from include.ml.source import build_processor

    torch.set_num_threads(args.threads)
    images, targets = phantom_like_images(args.images)
    processor = build_processor(args.image_size)
    x, y = to_tensor(processor, images), torch.as_tensor(targets)
    bare_training(x[: args.batch_size * 2], y[: args.batch_size * 2], args.batch_size, 2e-3)  # warm-up

    train = {"bare": [], "ops": []}
    evaluation = {"bare": [], "ops": []}
    from_images = {"bare": [], "ops": []}
    model = new_model()
    for _ in range(args.epochs):
        train["bare"].append(bare_training(x, y, args.batch_size, 2e-3))
        train["ops"].append(pipeline_training(images, targets, args.batch_size, args.image_size))
        evaluation["bare"].append(bare_evaluation(model, x, args.batch_size))
        evaluation["ops"].append(pipeline_evaluation(model, processor, images, args.batch_size))
        from_images["bare"].append(bare_evaluation_from_images(model, processor, images, args.batch_size))
        from_images["ops"].append(evaluation["ops"][-1])

    def row(name: str, runs: dict) -> str:
        bare, ops = statistics.median(runs["bare"]), statistics.median(runs["ops"])
        return f"| {name} | {bare:,.1f} | {ops:,.1f} | {ops / bare:.2f} |"

    print(
        f"\nresnet-tiny, {args.images} images {args.image_size} px, batch {args.batch_size}, "
        f"{args.threads} threads, median of {args.epochs} alternating trials\n"
    )
    print("| path | bare torch images/s | operator path images/s | ratio |")
    print("|---|---:|---:|---:|")
    print(row("fine-tune step (augmentation included)", train))
    print(row("evaluation vs forward on processed tensors", evaluation))
    print(row("evaluation vs process-then-forward loop on the same images", from_images))

    from benchmarks.headline import record

    def ratio(runs: dict) -> str:
        return f"{statistics.median(runs['ops']) / statistics.median(runs['bare']):.2f}"

    record(
        "finetune",
        [
            ("fine-tune step: operator path / bare torch loop", ratio(train), "≥ 0.95"),
            ("evaluation: operator path / bare forward on processed tensors", ratio(evaluation), "≥ 0.95"),
            ("evaluation: operator path / process-then-forward loop", ratio(from_images), "-"),
        ],
    )


if __name__ == "__main__":
    main()
