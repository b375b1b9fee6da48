"""The front door: ``train``, ``unlearn``, ``methods`` and ``model`` (building a named architecture)."""
from __future__ import annotations

import time
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from .data.datasets import features, fingerprint, resolve
from .methods import base as registry
from .methods.base import MethodInfo, check_request, clone, output_size
from .provenance import stamp
from .training import Recipe, batches, fit


def model(name: str, data: Dataset, *, seed: int = 0, **kwargs: Any) -> nn.Module:
    """Build a built-in architecture (mlp, cnn, resnet18) sized for ``data``, initialised under ``seed``; the name
    and arguments are recorded so ``load_model`` can rebuild it without ``into=``."""
    import torch

    from .models import build_model

    base, idx = resolve(data)
    sample_shape = tuple(base.x.shape[1:])
    num_outputs = kwargs.pop("num_outputs", None) or (base.num_classes if base.task == "classification"
                                                      else (1 if base.y.ndim == 1 else base.y.shape[1]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        m = build_model(name, sample_shape=sample_shape, num_outputs=num_outputs, **kwargs)
    stamp(m, architecture={"name": name, "kwargs": {"sample_shape": list(sample_shape),
                                                    "num_outputs": num_outputs, **kwargs}},
          task=base.task, num_outputs=num_outputs)
    return m


def train(model: nn.Module, data: Dataset, *, seed: int = 0, **recipe: Any) -> nn.Module:
    """Train a copy of ``model`` on ``data`` and return it; ``model`` is left untouched.

    ``recipe`` keywords are the fields of :class:`expunge.training.Recipe` (epochs, lr, batch_size, optimizer,
    momentum, weight_decay, schedule, warmup, clip_grad_norm, loss). The recipe is recorded on the returned model
    so that ``unlearn(..., method="retrain")`` trains the oracle the same way.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module; got {type(model).__name__}")
    r = Recipe.from_dict(recipe)
    base, idx = resolve(data)
    if len(idx) == 0:
        raise ValueError("the training data is empty")
    if base.task == "classification":
        k = output_size(model, features(data)[:1])
        top = int(base.y[idx].max())
        if top >= k:
            raise ValueError(f"the data has label {top} but the model has only {k} outputs (labels 0..{k - 1})")
    work = clone(model)
    start = time.perf_counter()
    fit(work, batches(data, r.batch_size), recipe=r, task=base.task, seed=seed, name="train")
    stamp(work, model, recipe=r.to_dict(), task=base.task, data_fingerprint=fingerprint(data), seed=seed,
          seconds=time.perf_counter() - start, method=None, method_args={}, history=["train"])
    return work


def unlearn(model: nn.Module, *, forget: Dataset, retain: Dataset | None = None, method: str = "finetune",
            seed: int = 0, **args: Any) -> nn.Module:
    """Return a copy of ``model`` that has forgotten ``forget``, using ``method`` with ``args``.

    ``method="retrain"`` gives the oracle. Unknown methods or arguments raise ValueError listing what is allowed.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a method name; got {type(method).__name__}")
    return registry.get(method)(**args).unlearn(model, forget=forget, retain=retain, seed=seed)


def methods() -> dict[str, MethodInfo]:
    """Every registered method: summary, paper, reference repository, needs, tasks, defaults and tuning grid."""
    return {name: cls.info() for name, cls in registry.registered().items()}


__all__ = ["model", "train", "unlearn", "methods", "check_request"]
