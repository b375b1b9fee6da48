"""Representation-level pieces: splitting a model into a feature extractor and a head, and reading embeddings.

By default the split is found, not named: the *head* is the model's last layer, the ``nn.Linear`` whose output is
the model's output (found by one forward pass on a probe example), and the representation (embedding) is that
layer's input, read with a forward pre-hook. This works for any model whose last layer is an ``nn.Linear``: the
built-in models (where it is the output of their ``features``), a plain ``nn.Sequential`` or a user module with
the layer under any name. The *extractor* is everything before the head: every trainable parameter but the
head's. A caller may instead name the extractor, a submodule whose output is the representation (read with a
forward hook); its parameters are then the extractor's. Embeddings are read while the whole model runs, so
preprocessing in a model's ``forward`` is respected.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import features, first_rows
from ..devices import model_device, move
from ..per_sample import eval_mode


@dataclass(frozen=True, eq=False)
class Split:
    """Where a model is cut. ``at='input'``: the representation is the input of ``module``, the final
    ``nn.Linear`` (the head); ``at='output'``: it is the output of ``module``, an extractor named by the caller.
    ``name`` is the module's dotted name in the model (``''``: the model itself)."""
    name: str
    module: nn.Module
    at: str


def final_linear_of(model: nn.Module, probe: torch.Tensor, *, method: str,
                    allowed: str = "a model whose last layer is an nn.Linear") -> tuple[str, nn.Linear]:
    """The ``nn.Linear`` whose output is the model's output on ``probe`` (the model's last layer) and its dotted
    name, found with forward hooks on one forward pass in eval mode; ValueError naming ``allowed`` when there is
    none, or when that layer runs more than once per forward pass."""
    probe = move(probe, model_device(model))
    calls: list[tuple[nn.Module, torch.Tensor]] = []
    handles = [m.register_forward_hook(lambda mod, inputs, out: calls.append((mod, out)))
               for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(probe)
    finally:
        for h in handles:
            h.remove()
    hits = [mod for mod, o in calls if o is out]
    if not hits and calls and isinstance(out, torch.Tensor) and _same_values(calls[-1][1], out):
        hits = [calls[-1][0]]    # the last layer's output, reshaped (e.g. squeezed) by the model's forward
    if not hits:
        raise ValueError(f"method {method!r} needs the model split into a feature extractor and a head, but the "
                         f"output of {type(model).__name__} is not the output of an nn.Linear layer; allowed: "
                         f"{allowed}")
    layer = hits[-1]
    runs = sum(mod is layer for mod, _ in calls)
    if runs != 1:
        raise ValueError(f"method {method!r}: the model's last nn.Linear runs {runs} times per forward pass, so its "
                         f"input is not one representation per example; allowed: {allowed}")
    name = next(n for n, m in model.named_modules() if m is layer)
    return name, layer   # type: ignore[return-value]


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (isinstance(a, torch.Tensor) and a.numel() == b.numel() and a.data_ptr() == b.data_ptr()
            and torch.equal(a.reshape(-1), b.reshape(-1)))


def extractor_of(model: nn.Module, name: str, *, method: str) -> nn.Module:
    """The submodule of ``model`` called ``name`` (a dotted path), checked to be a usable extractor."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"method {method!r}: extractor={name!r} is not allowed; expected the (dotted) name of the "
                         "submodule whose output is the representation, e.g. 'features', or None (the input of the "
                         "model's last nn.Linear layer)")
    try:
        module = model.get_submodule(name)
    except AttributeError:
        children = ", ".join(n for n, _ in model.named_children()) or "none"
        raise ValueError(
            f"method {method!r}: extractor={name!r} is not allowed: {type(model).__name__} has no submodule "
            f"{name!r}. Pass extractor='<name>' naming the submodule whose output is the representation the head "
            f"reads (this model's submodules: {children}), or leave it out to split at the model's last "
            "nn.Linear layer") from None
    if module is model:
        raise ValueError(f"method {method!r}: the extractor must be a submodule, not the whole model")
    if not any(p.requires_grad for p in module.parameters()):
        raise ValueError(f"method {method!r}: extractor {name!r} has no trainable parameters")
    return module


def find_split(model: nn.Module, probe: torch.Tensor, *, method: str, extractor: str | None = None) -> Split:
    """The split of ``model``: at the submodule named ``extractor`` when given, else at the input of the model's
    last ``nn.Linear`` (found by a forward pass on ``probe``, a batch of one or more examples)."""
    if extractor is not None:
        return Split(extractor, extractor_of(model, extractor, method=method), "output")
    name, head = final_linear_of(model, probe, method=method, allowed=(
        "a model whose last layer is an nn.Linear (its input is the representation), or extractor='<name>' naming "
        "the submodule whose output is the representation"))
    split = Split(name, head, "input")
    if not extractor_parameters(model, split):
        raise ValueError(f"method {method!r}: the model has no trainable parameters before its last nn.Linear "
                         f"layer ({name or type(model).__name__}), so there is no feature extractor to change")
    return split


def extractor_parameters(model: nn.Module, split: Split) -> list[nn.Parameter]:
    """The extractor's trainable parameters: the named extractor's, or every one of the model's but the head's
    (in ``named_parameters`` order)."""
    if split.at == "output":
        return [p for p in split.module.parameters() if p.requires_grad]
    head = {id(p) for p in split.module.parameters()}
    return [p for p in model.parameters() if p.requires_grad and id(p) not in head]


def embed(model: nn.Module, split: Split, x: torch.Tensor) -> torch.Tensor:
    """The representation at ``split``, flattened to one row per example, while ``model`` runs on ``x``."""
    outs: list = []
    if split.at == "input":
        handle = split.module.register_forward_pre_hook(lambda module, inputs: outs.append(inputs[0]))
    else:
        handle = split.module.register_forward_hook(lambda module, inputs, output: outs.append(output))
    try:
        model(x)
    finally:
        handle.remove()
    if len(outs) != 1 or not isinstance(outs[0], torch.Tensor) or outs[0].ndim < 1 or len(outs[0]) != len(x):
        raise ValueError(f"the extractor ({type(split.module).__name__}) must run once per forward pass and return "
                         f"one tensor row per example; it ran {len(outs)} time(s)")
    return outs[0].flatten(1) if outs[0].ndim > 1 else outs[0].unsqueeze(1)


def embed_all(model: nn.Module, split: Split, data: Dataset, *, batch_size: int = 1024) -> torch.Tensor:
    """Embeddings of every example of ``data`` (features only), in order, in eval mode and without gradients."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = model_device(model)
            return torch.cat([embed(model, split, move(x, device)) for x in features(data).split(batch_size)])
    finally:
        model.train(was_training)


def probe_of(data: Dataset) -> torch.Tensor:
    """One example of ``data`` (features only), batched, for finding a model's split."""
    return first_rows(data)
