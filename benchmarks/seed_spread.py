"""How much the default recipe moves with its seed alone: each entry of MRI_TRAIN_SWEEP trained with
several seeds on the phantom set (the demo's data: generated if missing), with the torch threads
pinned, the validation ROC AUC of the kept epoch and the test ROC AUC with its 95% interval per
run, then the mean and sample SD per entry. Prints a Markdown table.

    python -m benchmarks.seed_spread --seeds 0 1 2

Everything but the seed is the demo's: images, holdout rule, hyperparameters, threads. What a sweep
entry with ``"seeds": [0, 1, 2]`` reports in the pipeline (``seed_spread``), here with the test score
beside it, which the pipeline never looks at while choosing.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import statistics
from pathlib import Path

from include.config import PROJECT_ROOT, settings


def phantom_split(folder: Path, split: str, labels: tuple[str, ...]) -> tuple[list, list[int], list[str]]:
    """The split's images as the set's labels.csv lists them (decoded as the pipeline does), class
    indices and holdout keys (each image's subject), in the order a snapshot lists them (by SHA-256), so
    a seed gives the pipeline's batches and validation holdout."""
    from include.ml.data import holdout_keys
    from include.ml.predict import open_image

    files = {}
    with (folder / "labels.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["file"].startswith(f"{split}/") and row["label"] in labels:
                data = (folder / row["file"]).read_bytes()
                files[hashlib.sha256(data).hexdigest()] = (data, labels.index(row["label"]), row["subject"])
    hashes = sorted(files)
    keys = holdout_keys([(None, None, sha256, files[sha256][2]) for sha256 in hashes])
    return [open_image(files[sha256][0]) for sha256 in hashes], [files[sha256][1] for sha256 in hashes], keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--phantom-dir", type=Path, default=PROJECT_ROOT / "data" / "phantom")
    args = parser.parse_args()

    import torch

    from include.ml.bootstrap import metric_interval
    from include.ml.hyperparameters import TrainConfig
    from include.ml.predict import predict_proba
    from include.ml.source import load_base_model
    from include.ml.train import fine_tune
    from include.training.records import base_hyperparameters
    from launcher.phantom import PhantomConfig, generate_dataset

    cfg = settings()
    if not (args.phantom_dir / "labels.csv").exists():
        generate_dataset(args.phantom_dir, PhantomConfig())
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    images, targets, keys = phantom_split(args.phantom_dir, "train", cfg.labels)
    test_images, test_targets, _ = phantom_split(args.phantom_dir, "test", cfg.labels)
    print(f"{len(images)} train / {len(test_images)} test images, {torch.get_num_threads()} torch threads\n")
    print("| sweep entry | seed | kept epoch | validation ROC AUC | test ROC AUC [95% interval] |")
    print("|---|---:|---:|---:|---|")
    summaries = []
    # The sweep's distinct hyperparameters: an entry's own "seed" or "seeds" give way to --seeds.
    entries = []
    for entry in cfg.train_sweep:
        hyperparameters = {name: value for name, value in entry.items() if name not in ("seed", "seeds")}
        if hyperparameters not in entries:
            entries.append(hyperparameters)
    for number, entry in enumerate(entries):
        validation, test = [], []
        for seed in args.seeds:
            config = TrainConfig.from_dict({**base_hyperparameters(cfg), **entry, "seed": seed}, f"entry {number}")
            base = load_base_model(cfg.model_source, cfg.labels, config.image_size, Path(cfg.production_dir), seed=seed)
            result = fine_tune(base.model, base.processor, images, targets, config, keys)
            probabilities = predict_proba(base.model, base.processor, test_images)
            score = metric_interval(test_targets, probabilities, "roc_auc", cfg.bootstrap_resamples)
            chosen_by = (result.validation or {}).get("roc_auc")  # None without a holdout
            validation.append(chosen_by)
            test.append(score.value)
            print(
                f"| {number}: {entry} | {seed} | {result.best_epoch} | {number_or_dash(chosen_by)} | "
                f"{score.value:.4f} [{score.low:.4f}, {score.high:.4f}] |",
                flush=True,
            )
        summaries.append((number, validation, test))
    print("\n| sweep entry | seeds | validation ROC AUC mean (SD) | test ROC AUC mean (SD) |")
    print("|---|---:|---:|---:|")
    for number, validation, test in summaries:
        print(f"| {number} | {len(args.seeds)} | {mean_and_sd(validation)} | {mean_and_sd(test)} |")


def number_or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def mean_and_sd(values: list[float | None]) -> str:
    """``mean (SD)`` of the values there are; the SD needs two."""
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    sd = f"{statistics.stdev(present):.4f}" if len(present) > 1 else "-"
    return f"{statistics.mean(present):.4f} ({sd})"


if __name__ == "__main__":
    main()
