"""Relearn time and the anamnesis index (AIN): how quickly a model recovers what it was asked to forget.

Paper: Chundawat et al., "Zero-Shot Machine Unlearning", IEEE TIFS 2023 (AIN), used for regression by Tarun et
al., "Deep Regression Unlearning", ICML 2023. Reference: https://github.com/ayushkumartarun/deep-regression-unlearning
(``metrics.py``: ``relearn_time`` and ``ain``).

Relearn time: fine-tune a copy of a model on the forget set (Adam, lr 1e-3, batch 256, as in the reference) and
count optimiser steps until its forget loss is back within ``tolerance`` (5%) of the *original* model's forget
loss, checking after every step, for at most ``max_epochs`` (10) passes over the forget set. The loss is
cross-entropy for classification and L1 (the reference's loss) for regression, measured in eval mode on the whole
forget set (or on ``measure_on``, e.g. a held-out set from the forget distribution, as the reference does).

AIN = relearn time of the unlearned model ÷ relearn time of the oracle. Near 1 means the unlearned model relearns
no faster than a model that never saw the data; well below 1 means the forgotten knowledge was only suppressed.

Deviations from the reference: the fine-tuning runs through ``training.fit`` (seeded and repeatable; the stop is
a :class:`~expunge.training.StopTraining` raised by a step hook) instead of its own loop; a model that already
meets the target counts 0 steps; a model that never meets it counts the steps it was allowed and is flagged
``reached=False``.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import resolve
from ..devices import model_device, move
from ..training import Recipe, StopTraining, batches, fit
from .outputs import per_example_loss


@dataclass(frozen=True)
class RelearnResult:
    steps: int            # optimiser steps until the forget loss met the target (the cap when not reached)
    reached: bool         # whether the target was met within the cap
    start_loss: float     # forget loss before any relearning
    final_loss: float     # forget loss when relearning stopped
    target_loss: float


@dataclass(frozen=True)
class AnamnesisIndex:
    ain: float            # unlearned.steps / oracle.steps (inf when the oracle needs 0 steps and the model more)
    unlearned: RelearnResult
    oracle: RelearnResult
    original_loss: float  # the original model's forget loss, from which the target is set


@torch.no_grad()
def forget_loss(model: nn.Module, data: Dataset, *, batch_size: int = 1024) -> float:
    """Mean loss of ``model`` on ``data`` in eval mode: cross-entropy (classification) or L1 (regression)."""
    base, idx = resolve(data)
    if len(idx) == 0:
        raise ValueError("cannot measure a loss on an empty dataset")
    was_training = model.training
    model.eval()
    total, device = 0.0, model_device(model)
    for chunk in idx.split(batch_size):
        out = model(move(base.x[chunk], device))
        total += float(per_example_loss(out, move(base.y[chunk], device), base.task).sum())
    model.train(was_training)
    return total / len(idx)


def relearn_time(model: nn.Module, forget: Dataset, *, target_loss: float, measure_on: Dataset | None = None,
                 lr: float = 1e-3, batch_size: int = 256, max_epochs: int = 10, seed: int = 0) -> RelearnResult:
    """Steps of fine-tuning a copy of ``model`` on ``forget`` until its loss on ``measure_on`` (default: the forget
    set) is at most ``target_loss``. ``model`` is not modified."""
    if not math.isfinite(target_loss) or target_loss < 0:
        raise ValueError(f"target_loss must be a finite number >= 0; got {target_loss!r}")
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise ValueError(f"max_epochs must be an integer >= 1; got {max_epochs!r}")
    measure_on = forget if measure_on is None else measure_on
    work = copy.deepcopy(model)
    start = forget_loss(work, measure_on)
    if start <= target_loss:
        return RelearnResult(0, True, start, start, target_loss)
    state = {"steps": 0, "loss": start}

    def check(m: nn.Module) -> None:
        state["steps"] += 1
        state["loss"] = forget_loss(m, measure_on)
        if state["loss"] <= target_loss:
            raise StopTraining(f"forget loss {state['loss']:.4g} <= target {target_loss:.4g}")

    task = resolve(forget)[0].task
    recipe = Recipe(epochs=max_epochs, lr=lr, batch_size=batch_size, optimizer="adam", weight_decay=0.0,
                    schedule="constant", loss="auto" if task == "classification" else "l1")
    fit(work, batches(forget, batch_size), recipe=recipe, task=task, seed=seed, name="relearn", step_hooks=[check])
    return RelearnResult(state["steps"], state["loss"] <= target_loss, start, state["loss"], target_loss)


def anamnesis_index(unlearned: nn.Module, *, original: nn.Module, oracle: nn.Module, forget: Dataset,
                    measure_on: Dataset | None = None, tolerance: float = 0.05, lr: float = 1e-3,
                    batch_size: int = 256, max_epochs: int = 10, seed: int = 0) -> AnamnesisIndex:
    """AIN of ``unlearned``: its relearn time on ``forget`` ÷ the oracle's, both until the forget loss is within
    ``tolerance`` of the original model's. Works for classification and regression."""
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be a fraction in [0, 1); got {tolerance!r}")
    measure = forget if measure_on is None else measure_on
    original_loss = forget_loss(original, measure)
    target = (1 + tolerance) * original_loss
    kw = dict(target_loss=target, measure_on=measure_on, lr=lr, batch_size=batch_size, max_epochs=max_epochs,
              seed=seed)
    ours = relearn_time(unlearned, forget, **kw)
    ref = relearn_time(oracle, forget, **kw)
    if ref.steps == 0:
        ain = 1.0 if ours.steps == 0 else math.inf
    else:
        ain = ours.steps / ref.steps
    return AnamnesisIndex(ain, ours, ref, original_loss)


__all__ = ["RelearnResult", "AnamnesisIndex", "forget_loss", "relearn_time", "anamnesis_index"]
