"""Random-label unlearning for class-conditional diffusion models (SalUn's RL, without the saliency mask).

Paper: Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image
Classification and Generation", ICLR 2024 (Sec. 4, Eq. 7 without the mask).
Reference: https://github.com/OPTML-Group/Unlearn-Saliency (``DDPM/runners/diffusion.py``, ``saliency_unlearn``
with ``--method rl``; commit a6e89fd).

For noised forget images x_t of class c the prediction ε_θ(x_t, t, c) is pulled (mean squared error over every
value) to the model's own detached prediction ε_θ(x_t, t, c') for another class c', so that the condition c comes
to generate class c'; α × the model's training loss (the denoising loss with classifier-free label dropout) on a
retain batch keeps the other classes. Each step pairs a forget batch with a retain batch; an epoch is one pass over
the forget set.

Needs: forget and retain images with labels; diffusion models (``expunge.gen.DiffusionModel``).
Defaults: Adam, lr 1e-4, weight decay 0, gradients clipped at norm 1, constant rate (the reference config
``DDPM/configs/cifar10_saliency_unlearn.yml``); batches of 64 (the reference's 128 halved for the few images here);
``target="next"``: c' = the next class after c, (c + 1) mod n, as the reference fixes it (``"random"`` draws a
retained class per example and step); 10 epochs (~30 steps on a digits class; the reference's 1000 iterations of 128
are ~26 passes over a CIFAR-10 class): in single runs made when choosing these defaults (not benchmark results), on
the embedded digits model (``expunge.gen.unet()``, its own recipe), forgetting digit 3 took the share of its samples
a logistic regression of the real digits assigns to it from 93% to 7%, the retained digits' from 88% to 89% (20
epochs: 0% and 85%); ``alpha=3.0``: the README's command (``--alpha 1e-3``) weighs the retain loss summed over the
3×32×32 values of an image against a forget loss averaged over them, i.e. 1e-3 × 3072 ≈ 3 in the per-value units of
expunge's denoising loss (the code's default ``--alpha 1.0`` would be 3072; the README's is the setting of the
paper's runs).
Grid: lr in {1e-4, 3e-4, 1e-3}, epochs in {5, 10, 20}, alpha in {0.3, 1, 3, 10}.

Deviations: (a) both predictions are the plain conditional ones; the reference computes them in training mode,
where each example's condition is replaced by the null class with probability 0.1 independently in the two calls.
(b) Timesteps are drawn uniformly per example; the reference pairs each draw t with T − 1 − t (antithetic
sampling). (c) With several forgotten classes, c' is the next class that is not forgotten (the reference forgets
one class). (d) The reference keeps no EMA copy during unlearning either; none here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..training import zipped
from ._generative import GenerativeArgs, GenerativeMethod, forget_classes, part_data
from .base import Needs, register

TARGETS = ("next", "random")


@dataclass
class GenRLArgs(GenerativeArgs):
    epochs: int = 10
    alpha: float = 3.0
    target: str = "next"


def substitute_classes(y: torch.Tensor, n_classes: int, forgotten: list[int], how: str) -> torch.Tensor:
    """A class c' for each forget label in ``y`` among the classes not forgotten: ``"next"``, the first one after
    c cyclically ((c + 1) mod n with one forgotten class); ``"random"``, a uniform draw per example from torch's
    global RNG."""
    kept = [c for c in range(n_classes) if c not in set(forgotten)]
    if not kept:
        raise ValueError("every class is being forgotten; random-label unlearning needs a class to map them to")
    if how == "random":
        return torch.tensor(kept, device=y.device)[torch.randint(0, len(kept), y.shape, device="cpu").to(y.device)]

    def next_kept(c: int) -> int:
        return next((c + k) % n_classes for k in range(1, n_classes + 1) if (c + k) % n_classes in kept)
    return torch.tensor([next_kept(c) for c in range(n_classes)], device=y.device)[y]


def random_label_loss(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, forgotten: list[int],
                      how: str) -> torch.Tensor:
    """Mean squared error between ε_θ(x_t, t, y) and the detached ε_θ(x_t, t, c') on noised forget images."""
    noise = torch.randn(x0.shape, device="cpu").to(x0.device)       # CPU draws: the same numbers on every device
    t = torch.randint(0, model.T, (len(x0),), device="cpu").to(x0.device)
    x_t = model.add_noise(x0, noise, t)
    with torch.no_grad():
        target = model.eps(x_t, t, substitute_classes(y, model.n_classes, forgotten, how))
    return F.mse_loss(model.eps(x_t, t, y), target)


@register
class GenRL(GenerativeMethod):
    name = "gen_rl"
    summary = ("Diffusion: map the forgotten class's noise prediction to another class's (detached), plus α × the "
               "training loss on retain.")
    paper = ("Fan et al., SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image "
             "Classification and Generation, ICLR 2024 (RL for diffusion)")
    reference = "https://github.com/OPTML-Group/Unlearn-Saliency"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    Args = GenRLArgs
    grid = {"lr": [1e-4, 3e-4, 1e-3], "epochs": [5, 10, 20], "alpha": [0.3, 1.0, 3.0, 10.0]}

    def validate(self) -> None:
        super().validate()
        self.require(("alpha", self.args.alpha >= 0, "a number >= 0"),
                     ("target", self.args.target in TARGETS, f"one of {', '.join(TARGETS)}"))

    def loss(self, forgotten: list[int]) -> Callable[[nn.Module, Any, Any], torch.Tensor]:
        a = self.args

        def loss_fn(model: nn.Module, batch: Any, ctx: Any) -> torch.Tensor:
            loss = random_label_loss(model, *part_data(batch, "forget"), forgotten, a.target)
            if a.alpha:
                loss = loss + a.alpha * model.training_loss(*part_data(batch, "retain"))
            return loss
        return loss_fn

    def plan(self, forget: Dataset, retain: Dataset | None) -> Any:
        bs = self.args.batch_size
        return zipped(("forget", forget, bs), ("retain", retain, bs))

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        return self.recipe_fit(model, self.plan(forget, retain), self.loss(forget_classes(forget)), seed)
