"""NegGrad+: descend on the retain set and ascend on the forget set in the same step.

Paper: Kurmanji et al., "Towards Unbounded Machine Unlearning" (SCRUB), NeurIPS 2023, which introduced it as a
strong baseline; Cadet et al. (DeepUnlearn) call it the minimum baseline to beat.
Reference: https://github.com/meghdadk/SCRUB.
Loss on zipped retain/forget batches: α·(L_R + λ‖θ − θ0‖²) − (1 − α)·L_F, with λ = weight_decay / 2 as in the
reference's ``l2_penalty`` (the pull is toward the original weights θ0, so the optimiser applies no weight decay
of its own). The forget set is cycled so every retain batch has a forget partner.
Needs: forget and retain data with labels; classification and regression.
Defaults, from the reference's ``small_scale_unlearning.ipynb`` (``negative_grad`` and the cells that call it):
α 0.95 (``args.ng_alpha``), lr 0.01 (``args.ng_lr``), 10 epochs (``args.ng_epochs``), plain SGD without momentum
(``negative_grad`` builds ``torch.optim.SGD(params, lr=lr, weight_decay=0.0)``), forget batch 64
(``args.forget_bs``), retain batch 128 (``args.batch_size``: ``main.py --batch-size``, 128 by default and in the
notebook's runs); weight decay (the λ of the pull to θ0) 5e-4, ``main.py``'s ``--weight-decay`` default, although
the notebook's small-scale runs pass 0.1 (a pull tuned to their tiny forget sets).
Grid: alpha in {0.9, 0.95, 0.99}, lr in {0.001, 0.005, 0.01, 0.05}, epochs in {3, 5, 10}.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import task_of
from ..training import Batch, StepContext, fit, task_loss, zipped
from ._common import snapshot, squared_distance
from .base import Method, Needs, TrainArgs, register


@dataclass
class NegGradPlusArgs(TrainArgs):
    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 128
    forget_batch_size: int = 64
    momentum: float = 0.0
    alpha: float = 0.95


@register
class NegGradPlus(Method):
    name = "neggrad_plus"
    summary = "Descend on retain and ascend on forget in one step, anchored to the original weights."
    paper = "Kurmanji et al., Towards Unbounded Machine Unlearning, NeurIPS 2023"
    reference = "https://github.com/meghdadk/SCRUB"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    Args = NegGradPlusArgs
    grid = {"alpha": [0.9, 0.95, 0.99], "lr": [0.001, 0.005, 0.01, 0.05], "epochs": [3, 5, 10]}

    def validate(self) -> None:
        super().validate()
        self.require(("alpha", 0 <= self.args.alpha <= 1, "a number in [0, 1]"))

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        task = task_of(retain)
        loss = task_loss("auto", task)
        anchor = snapshot(model)
        lam = a.weight_decay / 2

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            r, f = batch["retain"], batch["forget"]
            keep = loss(m(r.x), r.y) + lam * squared_distance(m, anchor)
            return a.alpha * keep - (1 - a.alpha) * loss(m(f.x), f.y)

        plan = zipped(("retain", retain, a.batch_size), ("forget", forget, a.forget_batch_size))
        return fit(model, plan, recipe=a.recipe(weight_decay=0.0), task=task, seed=seed, name=self.name,
                   loss_fn=loss_fn, step_hooks=self.step_hooks())
