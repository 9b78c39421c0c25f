"""The hyperparameters of a fine-tune: one frozen dataclass, a comment per field, checked when built
from JSON (a DAG param, a sweep entry) so a typo fails with the known names instead of being ignored.
No torch here: DAG tasks validate a sweep without loading it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainConfig:
    # Passes over the training images: on the phantom with subjects, 30 left the training accuracy
    # near 0.90 (underfitting under augmentation); see the README's training section.
    epochs: int = 50
    # Images per optimizer step.
    batch_size: int = 32
    # Peak AdamW learning rate, reached after the warm-up.
    learning_rate: float = 2e-3
    # AdamW's decoupled weight decay.
    weight_decay: float = 0.05
    # Epochs of linear warm-up before the cosine decay to zero.
    warmup_epochs: float = 0.5
    # Side, in pixels, images are resized to (160 shows the small lesions 128 blurred away).
    image_size: int = 160
    # Seeds the initial weights, the validation split, the batch order and the augmentation.
    seed: int = 0
    # Train only the classifier head (a pretrained backbone on little data); False trains everything.
    freeze_backbone: bool = False
    # Flips and small rotations, scalings and shifts of each training batch; False: no augmentation.
    augment: bool = True
    # With augment, also a random gain, smooth bias field and noise per image: the scanner's gain,
    # coil shading and noise vary per scan, so the model must not read the class from brightness.
    augment_intensity: bool = True
    # Share of each class held out to pick the best epoch and stop early; 0 keeps the last epoch.
    validation_fraction: float = 0.15
    # Epochs without a better validation score before stopping; 0 never stops early.
    patience: int = 10
    # Batches between progress lines.
    log_every: int = 10

    @classmethod
    def from_dict(cls, values: dict, where: str) -> TrainConfig:
        """A config from JSON-like ``values``; unknown names or wrong types raise naming ``where``."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"{where}: unknown hyperparameters {unknown}; known: {', '.join(fields)}.")
        checked = {}
        for name, value in values.items():
            kind = type(getattr(cls(), name))
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"{where}: {name}={value!r} should be a {kind.__name__}.")
            checked[name] = value
        config = cls(**checked)
        if config.epochs < 1 or config.batch_size < 2 or config.image_size < 16 or config.learning_rate <= 0:
            raise ValueError(f"{where}: need epochs >= 1, batch_size >= 2, image_size >= 16, learning_rate > 0.")
        if not 0 <= config.validation_fraction < 1:
            raise ValueError(f"{where}: validation_fraction={config.validation_fraction} must be in [0, 1).")
        return config


def expand_seeds(sweep: list[dict], where: str) -> list[dict]:
    """The sweep with one entry per seed: an entry naming ``seeds`` (a list of whole numbers) becomes
    one fine-tune per seed, the same hyperparameters with ``seed`` set, so the spread over seeds can
    be measured (``seed_spread``). An entry without ``seeds`` is kept as it is."""
    expanded = []
    for number, entry in enumerate(sweep):
        seeds = entry.get("seeds")
        if seeds is None:
            expanded.append(entry)
            continue
        if not (isinstance(seeds, list) and seeds and all(type(s) is int for s in seeds)) or "seed" in entry:
            raise ValueError(
                f"{where} entry {number}: seeds={seeds!r} should be a non-empty list of whole numbers, "
                "without a seed beside it."
            )
        rest = {name: value for name, value in entry.items() if name != "seeds"}
        expanded.extend({**rest, "seed": seed} for seed in seeds)
    return expanded


def seed_spread(results: list[dict], metric: str = "roc_auc") -> list[dict]:
    """Per set of hyperparameters trained with several seeds: the seeds, and the mean and standard
    deviation of the validation ``metric`` over them (``results``: what the fine-tunes returned)."""
    groups: dict[str, list[dict]] = {}
    for result in results:
        same = {name: value for name, value in result["hyperparameters"].items() if name != "seed"}
        groups.setdefault(repr(sorted(same.items())), []).append(result)
    spread = []
    for members in groups.values():
        values = [m["validation"].get(metric) for m in members if m["validation"].get(metric) is not None]
        if len(members) < 2 or len(values) < 2:
            continue
        mean = sum(values) / len(values)
        sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        spread.append(
            {
                "hyperparameters": {k: v for k, v in members[0]["hyperparameters"].items() if k != "seed"},
                "seeds": [m["hyperparameters"]["seed"] for m in members],
                "metric": metric,
                "mean": mean,
                "sd": sd,
            }
        )
    return spread
