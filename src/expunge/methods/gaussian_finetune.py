"""Gaussian fine-tuning (Gaussian amnesiac) for regression: give the forget set random targets, fine-tune on D.

Paper: Tarun et al., "Deep Regression Unlearning", ICML 2023 (the "Gaussian-Amnesiac" baseline).
Reference: https://github.com/ayushkumartarun/deep-regression-unlearning (AgeDB notebook).

Every forget example's target is replaced by a draw from N(mean(y), std(y)), the mean and standard deviation of
the targets of the whole training set D = F ∪ R (per output column for multi-output targets), drawn under
``seed``; a copy of the original is then fine-tuned on D with those targets.

Needs: forget and retain data with labels (the forget labels enter only through mean(y) and std(y), as in the
reference); regression only.
Defaults (the reference's ``AgeDB_AllCNN_0to30_forgetting.ipynb``, its amnesiac ``fit_one_cycle`` call):
``epochs = 1``, ``lr = 0.001``, Adam without weight decay (``utils.fit_one_cycle``), L1 loss; batch 64 (the
project's default) instead of the reference's ``batch_size=256``, which leaves too few steps on a few thousand rows
(Friedman-1, 4800 rows: W1 to the oracle 0.85 at 256 vs 0.13 at 64).
Grid: lr in {1e-4, 5e-4, 1e-3, 5e-3}, epochs in {1, 2, 3}.

Deviations from the reference: the draws are seeded (the reference uses numpy's global RNG); the standard
deviation is the sample one (ddof 1), as pandas' ``std`` in the reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import targets
from ..training import batches, fit
from ._common import relabelled_union
from .base import Method, Needs, TrainArgs, register


@dataclass
class GaussianFinetuneArgs(TrainArgs):
    epochs: int = 1
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    loss: str = "l1"


def gaussian_targets(forget: Dataset, retain: Dataset, seed: int) -> torch.Tensor:
    """Draws from N(mean(y), std(y)) over the targets of F ∪ R, one per forget example, under ``seed``."""
    yf, yr = targets(forget), targets(retain)
    y = torch.cat([yf, yr]).double()
    mean, std = y.mean(0), (y.std(0) if len(y) > 1 else torch.zeros_like(y[0]))
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(yf.shape, generator=g, dtype=torch.float64, device="cpu")
    return (mean + std * noise).to(yf.dtype)


@register
class GaussianFinetune(Method):
    name = "gaussian_finetune"
    summary = "Replace the forget set's targets with Gaussian draws at the data's mean and spread; fine-tune on D."
    paper = "Tarun et al., Deep Regression Unlearning, ICML 2023"
    reference = "https://github.com/ayushkumartarun/deep-regression-unlearning"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    tasks = ("regression",)
    Args = GaussianFinetuneArgs
    grid = {"lr": [1e-4, 5e-4, 1e-3, 5e-3], "epochs": [1, 2, 3]}

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        data = relabelled_union(forget, retain, gaussian_targets(forget, retain, seed))
        return fit(model, batches(data, a.batch_size), recipe=a.recipe(), task="regression", seed=seed,
                   name=self.name, step_hooks=self.step_hooks())
