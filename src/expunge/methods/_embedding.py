"""Representation-level pieces: splitting a model into a feature extractor and a head, and reading embeddings.

A model is split at a named submodule, the *extractor*, whose output is the representation (embedding) the rest of
the model (the *head*) reads. The built-in models call it ``features``. Embeddings are read with a forward hook
while the whole model runs, so preprocessing a model's ``forward`` applies before its extractor is respected.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import features


def extractor_of(model: nn.Module, name: str, *, method: str) -> nn.Module:
    """The submodule of ``model`` called ``name`` (a dotted path), checked to be a usable extractor."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"method {method!r}: extractor={name!r} is not allowed; expected the (dotted) name of the "
                         "submodule whose output is the representation, e.g. 'features'")
    try:
        module = model.get_submodule(name)
    except AttributeError:
        children = ", ".join(n for n, _ in model.named_children()) or "none"
        raise ValueError(
            f"method {method!r} needs the model split into a feature extractor and a head, but "
            f"{type(model).__name__} has no submodule {name!r}. Pass extractor='<name>' naming the submodule whose "
            f"output is the representation the head reads (this model's submodules: {children}); the built-in "
            "models call it 'features'") from None
    if module is model:
        raise ValueError(f"method {method!r}: the extractor must be a submodule, not the whole model")
    if not any(p.requires_grad for p in module.parameters()):
        raise ValueError(f"method {method!r}: extractor {name!r} has no trainable parameters")
    return module


def embed(model: nn.Module, extractor: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The extractor's output, flattened to one row per example, while ``model`` runs on ``x``."""
    outs: list = []
    handle = extractor.register_forward_hook(lambda module, inputs, output: outs.append(output))
    try:
        model(x)
    finally:
        handle.remove()
    if len(outs) != 1 or not isinstance(outs[0], torch.Tensor) or outs[0].ndim < 1 or len(outs[0]) != len(x):
        raise ValueError(f"the extractor ({type(extractor).__name__}) must run once per forward pass and return "
                         f"one tensor row per example; it ran {len(outs)} time(s)")
    return outs[0].flatten(1) if outs[0].ndim > 1 else outs[0].unsqueeze(1)


def embed_all(model: nn.Module, extractor: nn.Module, data: Dataset, *, batch_size: int = 1024) -> torch.Tensor:
    """Embeddings of every example of ``data`` (features only), in order, in eval mode and without gradients."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([embed(model, extractor, x) for x in features(data).split(batch_size)])
    finally:
        model.train(was_training)
