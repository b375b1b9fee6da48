"""Planted-signal checks that a model really forgot: backdoor verification and the interclass-confusion test.

Both plant a signal only the forget set carries, train on the planted data, and measure how much of the signal
survives unlearning. The target is the oracle's value (the model retrained without the forget set), not zero.

**Backdoor verification** (Sommer et al., "Athena: Probabilistic Verification of Machine Unlearning", PoPETs 2022;
Guo et al., "Verifying in the Dark", 2023): a small trigger patch is stamped on the forget examples, which are
relabelled to a target class. A model trained on them learns "trigger ⇒ target"; after unlearning, the attack
success rate (the % of triggered test examples from other classes predicted as the target) should fall to the
oracle's. Treat it as one signal among several ("Verification of machine unlearning is fragile", Zhang et al.,
ICML 2024).

**Interclass confusion** (Goel et al., "Towards Adversarial Evaluations for Inexact Machine Unlearning", 2022):
the labels of ``n`` examples of class A and ``n`` of class B are swapped; the model learns to confuse A and B on
those examples; they form the forget set. Confusion = % of test examples of A predicted as B plus % of B predicted
as A; after unlearning it should return to the oracle's.

>>> import torch
>>> from expunge.data import as_dataset
>>> data = as_dataset(torch.zeros(4, 1, 3, 3), [0, 1, 2, 1])
>>> planted = plant_trigger(data, [0, 2], Trigger(target=1, size=1))
>>> planted.y.tolist(), planted.x[0, 0, 2, 2].item(), planted.x[1, 0, 2, 2].item()
([1, 1, 1, 1], 1.0, 0.0)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import ArrayDataset, resolve
from .outputs import predict


@dataclass(frozen=True)
class Trigger:
    """A square patch of ``value`` in the bottom-right corner of image-shaped inputs ``[C, H, W]`` (every channel),
    or on the last ``size`` features of flat inputs; examples carrying it are labelled ``target``."""

    target: int
    size: int = 2
    value: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.target, bool) or not isinstance(self.target, int) or self.target < 0:
            raise ValueError(f"trigger target must be a class index >= 0; got {self.target!r}")
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"trigger size must be an integer >= 1; got {self.size!r}")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """A copy of the batch ``x`` with the trigger stamped on every example."""
        out = x.clone()
        if out.ndim >= 3:
            if self.size > min(out.shape[-2:]):
                raise ValueError(f"trigger size {self.size} exceeds the image size {tuple(out.shape[-2:])}")
            out[..., -self.size:, -self.size:] = self.value
        else:
            if self.size > out.shape[-1]:
                raise ValueError(f"trigger size {self.size} exceeds the {out.shape[-1]} features")
            out[..., -self.size:] = self.value
        return out


def _copy_classification(dataset: Dataset, what: str) -> ArrayDataset:
    base, idx = resolve(dataset)
    if base.task != "classification":
        raise ValueError(f"{what} needs a classification dataset; got a {base.task} one")
    return ArrayDataset(base.x[idx].clone(), base.y[idx].clone(), task="classification",
                        class_names=base.class_names, groups=None if base.groups is None else base.groups[idx.numpy()])


def _positions(indices: Any, n: int) -> torch.Tensor:
    idx = torch.as_tensor(np.asarray(indices, dtype=np.int64)).flatten()
    if len(idx) == 0:
        raise ValueError("no indices given to plant the signal on")
    if int(idx.min()) < 0 or int(idx.max()) >= n:
        raise ValueError(f"indices must lie in [0, {n}); got values from {int(idx.min())} to {int(idx.max())}")
    if len(torch.unique(idx)) != len(idx):
        raise ValueError("indices contain duplicates")
    return idx


def plant_trigger(dataset: Dataset, indices: Any, trigger: Trigger) -> ArrayDataset:
    """A copy of ``dataset`` in which the examples at ``indices`` carry ``trigger`` and the label
    ``trigger.target``. Forget exactly those examples with ``split_forget(planted, indices=indices)``."""
    planted = _copy_classification(dataset, "plant_trigger")
    idx = _positions(indices, len(planted))
    planted.x[idx] = trigger.apply(planted.x[idx])
    planted.y[idx] = trigger.target
    return planted


def attack_success_rate(model: nn.Module, data: Dataset, trigger: Trigger) -> float:
    """% of ``data``'s examples whose true class is not the target that the model assigns to the target once the
    trigger is stamped on them."""
    base, idx = resolve(data)
    x, y = base.x[idx], base.y[idx]
    keep = y != trigger.target
    if not bool(keep.any()):
        raise ValueError("every example belongs to the trigger's target class; nothing to attack")
    triggered = ArrayDataset(trigger.apply(x[keep]), y[keep], task="classification")
    return float(100.0 * (predict(model, triggered).argmax(-1) == trigger.target).float().mean())


def confuse_classes(dataset: Dataset, a: int, b: int, n: int, *, seed: int = 0) -> tuple[ArrayDataset, np.ndarray]:
    """Swap the labels of ``n`` random examples of class ``a`` and ``n`` of class ``b``; return the relabelled copy
    and the sorted positions of the ``2n`` swapped examples (the forget set of the interclass-confusion test)."""
    data = _copy_classification(dataset, "confuse_classes")
    if a == b:
        raise ValueError(f"the two classes must differ; got a={a}, b={b}")
    rng = np.random.default_rng(seed)
    y = data.y.numpy()
    chosen = []
    for cls in (a, b):
        members = np.flatnonzero(y == cls)
        if not 1 <= n <= len(members):
            raise ValueError(f"n={n} is not allowed: class {cls} has {len(members)} examples; expected 1..{len(members)}")
        chosen.append(rng.choice(members, n, replace=False))
    data.y[torch.as_tensor(chosen[0])] = b
    data.y[torch.as_tensor(chosen[1])] = a
    return data, np.sort(np.concatenate(chosen))


def interclass_confusion(model: nn.Module, data: Dataset, a: int, b: int) -> float:
    """% of class-``a`` examples predicted ``b`` plus % of class-``b`` examples predicted ``a`` (0 to 200)."""
    base, idx = resolve(data)
    y = base.y[idx]
    pred = predict(model, data).argmax(-1)
    total = 0.0
    for src, dst in ((a, b), (b, a)):
        members = y == src
        if not bool(members.any()):
            raise ValueError(f"class {src} does not occur in the data")
        total += float(100.0 * (pred[members] == dst).float().mean())
    return total
