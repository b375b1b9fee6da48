"""SalUn for class-conditional diffusion models: random-label unlearning restricted to the salient weights.

Paper: Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image
Classification and Generation", ICLR 2024 (Sec. 4, Eq. 7).
Reference: https://github.com/OPTML-Group/Unlearn-Saliency (``DDPM/runners/diffusion.py``: ``generate_mask`` and
``saliency_unlearn`` with ``--method rl --mask_path ...``; commit a6e89fd).

1. Saliency: one pass over the forget set at the original weights, in eval mode. For each batch the images are
   noised (x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε, t uniform) and the loss is the squared error between ε and the
   classifier-free guided prediction (1 + w) ε_θ(x_t, t, c) − w ε_θ(x_t, t, ∅) (w = the model's ``guidance``, 2 as
   in the reference's ``--cond_scale``), summed over the values of an image and averaged over the batch; each
   batch's gradient is clipped to norm 1 (the config's ``grad_clip``) and the clipped gradients are summed. The top
   ``mask_ratio`` of all parameters by |summed gradient|, ranked together (one global threshold), form the mask.
2. Unlearning: ``gen_rl``'s loss (the forgotten class's prediction pulled to the next class's, plus α × the
   training loss on retain), with only masked weights free to change.

The mask is enforced on the weights, as expunge's classifier ``salun`` does: masked-out gradients are zeroed before
the optimiser step and, after each step, every frozen weight is restored to its original value
(``training.pin_weights``), so no optimiser state can move them.

Needs: forget and retain images with labels; diffusion models.
Defaults: those of ``gen_rl`` (Adam, lr 1e-4, clipping at 1, ``target="next"``, α = 3, 10 epochs, batches of 64)
and ``mask_ratio=0.5``: the reference hard-codes ``threshold_list = [0.5]`` and ignores ``--mask_ratio``; here the
ratio is an argument. The saliency pass draws its noise and timesteps under ``expunge.seeds.derive(seed,
"saliency-mask")``.
Grid: mask_ratio in {0.3, 0.5, 0.7}, lr in {1e-4, 3e-4, 1e-3}, epochs in {5, 10, 20}, alpha in {0.3, 1, 3, 10}.

Deviations: those of ``gen_rl``, and (a) the reference multiplies the mask into gradients after clipping them;
here masked-out gradients are zeroed first, so the clipping norm is that of the gradients that can move weights
(as for the classifier ``salun``); (b) the saliency timesteps are uniform per example, not antithetic pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import features, targets
from ..devices import model_device, move
from ..per_sample import eval_mode
from ..seeds import derive
from ..training import mask_gradients, pin_weights
from ._common import snapshot
from ._generative import forget_classes
from .base import register
from .gen_rl import GenRL, GenRLArgs
from .salun import top_fraction_mask

SALIENCY = "saliency-mask"    # the seed stream of the saliency pass's noise and timesteps


@dataclass
class GenSalUnArgs(GenRLArgs):
    mask_ratio: float = 0.5


def diffusion_saliency(model: nn.Module, forget: Dataset, batch_size: int, seed: int,
                       max_norm: float | None = 1.0) -> dict[str, torch.Tensor]:
    """|Σ over forget batches of the clipped gradient of the guided denoising loss| for every trainable parameter,
    at the current weights in eval mode; no step is taken and no ``.grad`` is touched."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    device = model_device(model)
    x_all, y_all = features(forget), targets(forget)
    gen = torch.Generator().manual_seed(derive(seed, SALIENCY))
    with eval_mode(model):
        for chunk in torch.arange(len(y_all), device="cpu").split(batch_size):
            x0, y = move(x_all[chunk], device), move(y_all[chunk], device)
            noise = move(torch.randn(x0.shape, generator=gen, dtype=x0.dtype, device="cpu"), device)
            t = move(torch.randint(0, model.T, (len(chunk),), generator=gen, device="cpu"), device)
            out = model.guided_eps(model.add_noise(x0, noise, t), t, y)
            loss = (noise - out).square().sum(dim=tuple(range(1, out.ndim))).mean()
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads if g is not None]))
            scale = min(1.0, float(max_norm / (norm + 1e-6))) if max_norm else 1.0
            for name, g in zip(params, grads):
                if g is not None:
                    total[name] += g * scale
    return {n: g.abs() for n, g in total.items()}


@register
class GenSalUn(GenRL):
    name = "gen_salun"
    summary = "Diffusion: gen_rl restricted to the weights most salient for the forgotten class's denoising loss."
    paper = ("Fan et al., SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image "
             "Classification and Generation, ICLR 2024")
    Args = GenSalUnArgs
    grid = {"mask_ratio": [0.3, 0.5, 0.7], "lr": [1e-4, 3e-4, 1e-3], "epochs": [5, 10, 20],
            "alpha": [0.3, 1.0, 3.0, 10.0]}

    def validate(self) -> None:
        super().validate()
        self.require(("mask_ratio", 0 < self.args.mask_ratio <= 1, "a fraction in (0, 1]"))

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        masks = top_fraction_mask(diffusion_saliency(model, forget, a.batch_size, seed), a.mask_ratio)
        anchor = snapshot(model)
        scale = {n: m.to(anchor[n].dtype) for n, m in masks.items()}
        return self.recipe_fit(model, self.plan(forget, retain), self.loss(forget_classes(forget)), seed,
                               grad_hooks=(mask_gradients(scale),), step_hooks=(pin_weights(masks, anchor),))
