"""Worst-case forget sets: the training examples that are hardest to forget.

Paper: Fan, Liu, Hero and Liu, "Challenging Forgets: Unveiling the Worst-Case Forget Sets in Machine Unlearning",
ECCV 2024. Reference: https://github.com/OPTML-Group/Unlearn-WorstCase (``data-wise/main_selmu.py``,
``unlearn/impl.py``, ``unlearn/FT.py``, ``utils.py``).

A random forget set says little about how an unlearning method behaves on the data it finds hardest. The paper
selects a forget set of size k by bi-level optimisation over a selection vector ``w`` (w_i = 1: example i is
forgotten), relaxed to the capped simplex S = {w in [0, 1]^N, sum(w) = k}::

    min_{w in S}  sum_i w_i * loss(theta_u(w); z_i) + gamma * ||w||^2
    s.t.          theta_u(w) = argmin_theta  sum_i [ w_i * loss_f(theta; z_i) + (1 - w_i) * loss_r(theta; z_i) ]

The upper level looks for examples whose loss *stays low* after they were unlearned; the lower level is the
unlearning method with every example's forget and retain terms weighted by w. The lower level is solved by
``unlearn_steps`` epochs of sign-SGD (theta <- theta - lr * sign(grad)) from the original weights. The sign makes
the implicit gradient d theta_u / d w vanish, so the upper gradient is the explicit one, per example
``loss(theta_u(w); z_i) + 2 * gamma * w_i``; one upper step is ``w <- proj_S(w - lr_w * that)``, where the
projection onto S is ``clip(a - mu, 0, 1)`` with the shift ``mu`` found by bisection (finished exactly here).
After ``select_epochs`` alternations the k largest entries of w form the forget set (the reference binarises
every ``feq_to_bi`` = 20 epochs, capped at ``select_epochs``, i.e. at the end for the README settings).

Lower levels (``method``), as weighted losses over the whole training set:

- ``finetune`` (the paper's and the README's choice, the reference's ``w_FT``): sum_i (1 - w_i) * loss_i;
- ``gradient_ascent``: -sum_i w_i * loss_i (not in the reference; the paper's lower level with no retain term);
- ``random_label``: sum_i [w_i * CE(x_i, other label) + (1 - w_i) * CE(x_i, y_i)], classification only (the
  reference's ``w_RL`` trains on its current binarised split instead of weighting, and draws new labels from all
  classes; here both terms are weighted as in ``w_FT`` and a new label is always another class).

``method_args`` configure the lower level: ``lr`` (the sign-SGD step, README ``--theta_lr 1e-3``) and
``batch_size`` (reference default 256). Losses are cross-entropy (classification) or squared error (regression).

Defaults: select_epochs 2, unlearn_steps 2 (README example; the reference's ``unlearn_steps`` are epochs over the
training set), lr_w 1e-3 (the upper step size reported in the paper; the reference's argparse default is 1e-2),
gamma 1e-4 (the paper; the reference's argparse default is 0).

Deviations from the reference code, each keeping the paper's intent:

- *Initial w.* The reference starts from a random binary forget set. Its projected steps of size
  lr_w * loss (about 1e-3) cannot move any entry across the gap between 0 and 1, so for the README settings the
  "worst-case" set it returns is, to within a handful of examples, its random starting set. Here w starts at the
  uniform point k/N of S, which favours no example, so the selection is decided by the losses alone.
- *Precision.* Starting from the uniform point, entries of w differ by about lr_w * loss; the projection runs in
  float64 and solves for the shift exactly once bisection has found the active set (the reference stops bisecting
  at a 1e-5 interval, coarser than those differences).
- *Losses for the upper step* are taken in eval mode with no augmentation (the reference reads them from its
  shuffled, augmented training loader with the model in train mode).

What to expect. With the defaults the entries of w stay strictly inside (0, 1), so the selection is the k
examples with the lowest loss summed over the ``select_epochs`` lower-level runs; a larger ``lr_w`` (about
1 / loss) lets entries reach 0 and 1, so that later lower-level runs unlearn the current selection. The examples
picked are the ones the rest of the data explains well, which the oracle also gets right: on digits (MLP 128-64,
10% = 144 examples, selection in 0.1 s) the oracle's forget error is 0.0% on the worst-case set against 3.5-4.9%
on random sets; fine-tuning's Avg. Gap *shrinks* (0.16 against 1.18-1.46) while random-label unlearning's grows
(11.9 against 1.8-6.7). This is the paper's finding (CIFAR-10, 10%: FT 2.00 -> 1.37, RL 4.38 -> 24.88,
SalUn 1.89 -> 24.51): methods that relabel the forget set are pushed far from the oracle on data that needs no
forgetting, methods that only train on the retain set follow the oracle.

Use: ``idx = select_worst_case(original, train, fraction=0.1)`` then ``expunge.split_forget(train, indices=idx)``.
Hyperparameters of the unlearning methods evaluated on the worst-case set are tuned on a random forget set of the
same size and reused unchanged (the paper's rule; see ``expunge.tuning``).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .data.datasets import resolve
from .methods._common import num_outputs, random_other_labels
from .methods.base import clone
from .metrics import predict
from .training import Batch, Recipe, StepContext, batches, fit, task_loss

log = logging.getLogger(__name__)

METHODS = ("finetune", "gradient_ascent", "random_label")


@dataclass(frozen=True)
class LowerLevel:
    """Settings of the w-weighted sign-SGD unlearning run (``method_args``)."""

    lr: float = 1e-3
    batch_size: int = 256


def select_worst_case(original: nn.Module, train: Dataset, *, fraction: float | None = None,
                      size: int | None = None, method: str = "finetune", method_args: dict | None = None,
                      seed: int = 0, select_epochs: int = 2, unlearn_steps: int = 2, lr_w: float = 1e-3,
                      gamma: float = 1e-4) -> np.ndarray:
    """The worst-case forget set of ``train`` for ``method``: sorted int64 positions in ``train``, exactly k of them.

    Give exactly one of ``fraction`` (k = round(fraction * N)) or ``size`` (k). ``original`` is not modified.
    Seeded and bitwise repeatable on CPU. Pass the result to ``expunge.split_forget(train, indices=...)``.
    """
    if not isinstance(original, nn.Module):
        raise TypeError(f"original must be a torch nn.Module; got {type(original).__name__}")
    n = len(train)  # type: ignore[arg-type]
    k = forget_size(n, fraction, size)
    lower = _lower_level(method_args)
    _check_settings(method, select_epochs, unlearn_steps, lr_w, gamma, seed)
    base, idx = resolve(train)
    if method == "random_label" and base.task != "classification":
        raise ValueError("method 'random_label' needs a classification task; this data is regression")
    loss_fn = _weighted_loss(method, base.task, base.y[idx], original, train, seed)
    w = torch.full((n,), k / n, dtype=torch.float64)
    recipe = Recipe(epochs=unlearn_steps, lr=lower.lr, batch_size=lower.batch_size, optimizer="sgd", momentum=0.0,
                    weight_decay=0.0, schedule="constant")
    for epoch in range(select_epochs):
        model = clone(original)
        fit(model, batches(train, lower.batch_size), recipe=recipe, task=base.task, seed=seed,
            name=f"worst_case:{method}", loss_fn=partial(loss_fn, w=w.float()), grad_hooks=[sign_gradients])
        losses = per_example_loss(predict(model, train), base.y[idx], base.task).double()
        w = project_capped_simplex(w - lr_w * (losses + 2 * gamma * w), k)
        log.debug("worst-case selection epoch %d/%d: upper objective %.4f", epoch + 1, select_epochs,
                  float((w * losses).sum() + gamma * (w * w).sum()))
    return top_k(w, k)


# --- the upper level ---------------------------------------------------------------------------------------------

def project_capped_simplex(a: torch.Tensor | np.ndarray, k: float, *, tol: float = 1e-12,
                           max_iter: int = 200) -> torch.Tensor:
    """Euclidean projection of ``a`` onto {w : 0 <= w_i <= 1, sum(w) = k}, in float64.

    The projection is ``clip(a - mu, 0, 1)`` for the shift ``mu`` at which the entries sum to k. The sum is
    non-increasing in ``mu``; bisection narrows ``mu`` until the set of entries strictly inside (0, 1) is
    settled, then ``mu`` is solved exactly on that set.
    """
    a = torch.as_tensor(a, dtype=torch.float64).flatten()
    n = a.numel()
    if not 0 <= k <= n:
        raise ValueError(f"k={k!r} is not allowed; expected 0 <= k <= {n} (the number of entries)")
    lo, hi = float(a.min()) - 1.0, float(a.max())        # total(lo) = n >= k >= 0 = total(hi)

    def total(mu: float) -> float:
        return float((a - mu).clamp(0, 1).sum())

    for _ in range(max_iter):
        if hi - lo <= tol * max(1.0, abs(lo), abs(hi)):
            break
        mid = 0.5 * (lo + hi)
        if total(mid) > k:
            lo = mid
        else:
            hi = mid
    mu = 0.5 * (lo + hi)
    free = ((a - mu) > 0) & ((a - mu) < 1)              # entries strictly inside (0, 1) at the bracketed shift
    if bool(free.any()):
        exact = (float(a[free].sum()) + int(((a - mu) >= 1).sum()) - k) / int(free.sum())
        if abs(total(exact) - k) < abs(total(mu) - k):
            mu = exact
    return (a - mu).clamp(0, 1)


def top_k(w: torch.Tensor, k: int) -> np.ndarray:
    """Sorted positions of the k largest entries of ``w`` (ties broken by position, lowest first)."""
    order = torch.argsort(-w, stable=True)[:k]
    return np.sort(order.numpy().astype(np.int64))


# --- the lower level ---------------------------------------------------------------------------------------------

def sign_gradients(model: nn.Module) -> None:
    """Grad hook turning the optimiser's step into a sign-SGD step (with momentum and weight decay off)."""
    for p in model.parameters():
        if p.grad is not None:
            p.grad.sign_()


def per_example_loss(outputs: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Cross-entropy (classification) or squared error averaged over outputs (regression), per example."""
    loss = task_loss("auto", task, reduction="none")(outputs, y)
    return loss.flatten(1).mean(1) if loss.ndim > 1 else loss


WeightedLoss = Callable[[nn.Module, Batch, StepContext, torch.Tensor], torch.Tensor]


def _weighted_loss(method: str, task: str, y_all: torch.Tensor, original: nn.Module, train: Dataset,
                   seed: int) -> WeightedLoss:
    """The lower-level loss of ``method`` on one batch, each example weighted by its entry of w."""
    if method == "random_label":
        g = torch.Generator().manual_seed(int(seed) + 1)
        other = random_other_labels(y_all, num_outputs(original, train), g)

        def relabel(model, batch, ctx, w):
            p = batch["data"]
            out = model(p.x)
            wi = w[p.positions].to(out.device)
            return (wi * F.cross_entropy(out, other[p.positions].to(out.device), reduction="none")
                    + (1 - wi) * F.cross_entropy(out, p.y, reduction="none")).sum()
        return relabel
    if method == "gradient_ascent":
        def ascend(model, batch, ctx, w):
            p = batch["data"]
            out = model(p.x)
            return -(w[p.positions].to(out.device) * per_example_loss(out, p.y, task)).sum()
        return ascend

    def finetune(model, batch, ctx, w):
        p = batch["data"]
        out = model(p.x)
        return ((1 - w[p.positions].to(out.device)) * per_example_loss(out, p.y, task)).sum()
    return finetune


# --- argument checks ---------------------------------------------------------------------------------------------

def forget_size(n: int, fraction: float | None, size: int | None) -> int:
    """k from exactly one of ``fraction`` (rounded as ``split_forget`` does) or ``size``; 1 <= k < n."""
    if (fraction is None) == (size is None):
        raise ValueError("give exactly one of fraction= or size= for the worst-case forget set; got "
                         f"{'both' if fraction is not None else 'neither'}")
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            raise ValueError(f"fraction must be a number strictly between 0 and 1; got {fraction!r}")
        k = max(1, int(round(fraction * n)))
        if k >= n:
            raise ValueError(f"fraction={fraction!r} of {n} examples leaves nothing to retain")
        return k
    if not _integer(size) or not 1 <= size < n:
        raise ValueError(f"size must be an integer in 1..{n - 1} (the training set has {n} examples); got {size!r}")
    return int(size)


def _lower_level(method_args: dict | None) -> LowerLevel:
    given = dict(method_args or {})
    allowed = ("lr", "batch_size")
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"worst-case selection: unknown lower-level argument(s) {unknown}; allowed: "
                         f"{', '.join(allowed)} (the sign-SGD step size and batch size)")
    out = LowerLevel(**given)
    _require(_number(out.lr) and out.lr > 0, "lr", out.lr, "a positive number")
    _require(_integer(out.batch_size) and out.batch_size >= 1, "batch_size", out.batch_size, "an integer >= 1")
    return out


def _check_settings(method: str, select_epochs: Any, unlearn_steps: Any, lr_w: Any, gamma: Any, seed: Any) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown lower-level method {method!r} for worst-case selection; allowed: "
                         f"{', '.join(METHODS)}")
    _require(_integer(select_epochs) and select_epochs >= 1, "select_epochs", select_epochs, "an integer >= 1")
    _require(_integer(unlearn_steps) and unlearn_steps >= 1, "unlearn_steps", unlearn_steps, "an integer >= 1")
    _require(_number(lr_w) and lr_w > 0, "lr_w", lr_w, "a positive number")
    _require(_number(gamma) and gamma >= 0, "gamma", gamma, "a number >= 0")
    if not _integer(seed):
        raise TypeError(f"seed must be an integer; got {seed!r}")


def _integer(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _require(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"worst-case selection: {name}={value!r} is not allowed; expected {allowed}")
