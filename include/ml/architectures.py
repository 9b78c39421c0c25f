"""The named ResNet architectures ``MRI_MODEL_SOURCE=config:<name>`` builds, as plain keyword
arguments of ``transformers.ResNetConfig`` (importable without torch, so settings can check names).

``ResNetConfig`` accepts unknown keyword arguments silently (``depth=[1, 1]`` builds a resnet-50),
so :func:`checked_architecture` validates every key and shape before a config is built.
"""

from __future__ import annotations

NAMED_CONFIGS: dict[str, dict] = {
    # The demo default (1.23M parameters): small enough to train from random init on 2 CPUs within
    # the demo; what it reaches is in the README.
    "resnet-tiny": {
        "layer_type": "basic",
        "embedding_size": 32,
        "hidden_sizes": [32, 64, 128, 256],
        "depths": [1, 1, 1, 1],
    },
    # The resnet-18 layout (11M parameters).
    "resnet-18": {
        "layer_type": "basic",
        "embedding_size": 64,
        "hidden_sizes": [64, 128, 256, 512],
        "depths": [2, 2, 2, 2],
    },
    # ResNetConfig()'s own default, the resnet-50 layout (23.5M parameters): one setting away, not
    # the default, since 30 epochs of it take most of an hour on 2 CPUs.
    "resnet-50": {
        "layer_type": "bottleneck",
        "embedding_size": 64,
        "hidden_sizes": [256, 512, 1024, 2048],
        "depths": [3, 4, 6, 3],
    },
}
# The keyword arguments of ResNetConfig that shape the network (transformers 5.24).
ARCHITECTURE_KEYS = (
    "num_channels",
    "embedding_size",
    "hidden_sizes",
    "depths",
    "layer_type",
    "hidden_act",
    "downsample_in_first_stage",
    "downsample_in_bottleneck",
)
LAYER_TYPES = ("basic", "bottleneck")


def checked_architecture(arguments: dict, where: str) -> dict:
    """``arguments`` if they describe a ResNet, else a ValueError naming ``where`` they came from."""
    unknown = sorted(set(arguments) - set(ARCHITECTURE_KEYS))
    if unknown:
        raise ValueError(
            f"{where}: unknown ResNetConfig arguments {unknown} (ResNetConfig would ignore them silently and "
            f"build another network); known: {', '.join(ARCHITECTURE_KEYS)}."
        )
    hidden, depths = arguments.get("hidden_sizes"), arguments.get("depths")
    if hidden is not None and depths is not None and len(hidden) != len(depths):
        raise ValueError(f"{where}: hidden_sizes {hidden} and depths {depths} need one entry per stage each.")
    if arguments.get("layer_type", "basic") not in LAYER_TYPES:
        raise ValueError(f"{where}: layer_type {arguments['layer_type']!r}; use one of {LAYER_TYPES}.")
    return dict(arguments)


for _name, _arguments in NAMED_CONFIGS.items():
    checked_architecture(_arguments, f"NAMED_CONFIGS[{_name!r}]")
