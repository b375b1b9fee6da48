"""A multilayer perceptron over flattened inputs."""
from __future__ import annotations

import math

import torch
from torch import nn


class MLP(nn.Module):
    """``in_features -> hidden... -> num_outputs`` with ReLU (and optional dropout); inputs of any shape are
    flattened. ``features`` is everything up to the last hidden layer, ``head`` the final linear layer."""

    def __init__(self, in_features: int, num_outputs: int, hidden: tuple[int, ...] | list[int] = (128, 64),
                 dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def mlp_for(sample_shape: tuple[int, ...], num_outputs: int, **kwargs) -> MLP:
    return MLP(math.prod(sample_shape), num_outputs, **kwargs)
