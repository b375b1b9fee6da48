"""Gradient ascent on the forgotten class's denoising loss (the GA variant of SalUn's diffusion code).

Paper: Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image
Classification and Generation", ICLR 2024 (``--method ga`` of its DDPM code); GA/NegGrad of Thudi et al.,
EuroS&P 2022, carried over to the denoising loss.
Reference: https://github.com/OPTML-Group/Unlearn-Saliency (``DDPM/runners/diffusion.py``, ``saliency_unlearn``
with ``--method ga``; commit a6e89fd).

loss = −ℓ(forget) + α · ℓ_train(retain), where ℓ is the conditional denoising loss ‖ε − ε_θ(x_t, t, c)‖² on the
forgotten class's images and ℓ_train the model's training loss (with classifier-free label dropout) on a retain
batch paired with each forget batch; an epoch is one pass over the forget set. ``alpha=0`` is plain gradient
ascent (the retain set is then not read during training).

Needs: forget and retain images with labels; diffusion models.
Defaults: Adam, lr 1e-4, weight decay 0, gradients clipped at norm 1, constant rate (the reference config
``DDPM/configs/cifar10_saliency_unlearn.yml``), batches of 64; ``alpha=1.0``, the reference's ``--alpha`` default
(both losses are on one scale there, sums over an image's values, and here, means over them, so the ratio carries
over); 5 epochs (~15 steps on a digits class). Measured in single runs made when choosing these defaults
(not benchmark results), by looking at the samples, on the embedded digits model (``expunge.gen.unet()``),
forgetting digit 3: these defaults leave it generated as before; lr 1e-3 destroys every class (samples become
blobs); on the tiny test model α = 10 at lr 6e-4 for 10 epochs turns the forgotten class into blobs while keeping
the others. The loss is unbounded below, so the balance between lr, epochs and α is everything: tune it.
Grid: lr in {1e-4, 3e-4, 1e-3}, epochs in {5, 10, 20}, alpha in {1, 3, 10}.

Deviations: (a) the ascended loss is the plain conditional denoising loss; the reference's also replaces 10% of the
forget labels by the null class (its training-mode label dropout), which pushes the unconditional prediction, shared
by every class under guidance, away from the forgotten images. (b) Timesteps are uniform per example, not
antithetic pairs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..training import batches, zipped
from ._generative import GenerativeArgs, GenerativeMethod, part_data
from .base import Needs, register


@dataclass
class GenGAArgs(GenerativeArgs):
    epochs: int = 5
    alpha: float = 1.0


@register
class GenGA(GenerativeMethod):
    name = "gen_ga"
    summary = ("Diffusion: gradient ascent on the forgotten class's denoising loss, plus α × the training loss on "
               "retain.")
    paper = ("Fan et al., SalUn, ICLR 2024 (the GA variant of its DDPM code); Thudi et al., Unrolling SGD, "
             "EuroS&P 2022 (GA)")
    reference = "https://github.com/OPTML-Group/Unlearn-Saliency"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    Args = GenGAArgs
    grid = {"lr": [1e-4, 3e-4, 1e-3], "epochs": [5, 10, 20], "alpha": [1.0, 3.0, 10.0]}

    def validate(self) -> None:
        super().validate()
        self.require(("alpha", self.args.alpha >= 0, "a number >= 0"))

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args

        def loss_fn(model: nn.Module, batch: Any, ctx: Any) -> torch.Tensor:
            loss = -model.denoising_loss(*part_data(batch, "forget"))
            if a.alpha:
                loss = loss + a.alpha * model.training_loss(*part_data(batch, "retain"))
            return loss

        bs = a.batch_size
        plan = (zipped(("forget", forget, bs), ("retain", retain, bs)) if a.alpha
                else batches(forget, bs, name="forget"))
        return self.recipe_fit(model, plan, loss_fn, seed)
