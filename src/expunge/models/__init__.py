"""Pure-torch architectures, chosen by name in configs; any ``nn.Module`` works through the Python API.

Every built-in model exposes ``features`` (the extractor) and ``head`` (the final linear layer), which
representation-level methods use.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .cnn import SmallCNN
from .mlp import MLP, mlp_for
from .resnet import ResNet18

MODELS = ("mlp", "cnn", "resnet18")
CONV_MODELS = ("cnn", "resnet18")   # built with convolution layers (methods with requires_conv run on these)


def build_model(name: str, *, sample_shape: tuple[int, ...], num_outputs: int, **kwargs: Any) -> nn.Module:
    """Build a model by name for inputs of ``sample_shape`` (one example, no batch axis) and ``num_outputs``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    try:
        if name == "mlp":
            return mlp_for(tuple(sample_shape), num_outputs, **kwargs)
        if len(sample_shape) != 3:
            raise ValueError(f"model {name!r} needs image inputs shaped C x H x W; got examples of shape "
                             f"{tuple(sample_shape)}")
        cls = SmallCNN if name == "cnn" else ResNet18
        return cls(sample_shape[0], num_outputs, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for model {name!r}: {e}") from None


__all__ = ["MLP", "SmallCNN", "ResNet18", "build_model", "MODELS", "CONV_MODELS"]
