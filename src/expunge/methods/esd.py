"""ESD: erasing a class (a concept) from a diffusion model by negative guidance on itself.

Paper: Gandikota et al., "Erasing Concepts from Diffusion Models", ICCV 2023 (Eq. 4, Algorithm 1).
Reference: https://github.com/rohitgandikota/erasing (``esd_diffusers.py``; ``esd_sd.py`` for Stable Diffusion).

The fine-tuned model's conditional prediction for the erased class c is trained to follow the frozen original's
prediction guided away from c:

    ε_θ(x_t, t, c)  ←  ε*(x_t, t, ∅) − η · [ε*(x_t, t, c) − ε*(x_t, t, ∅)]

with mean squared error over every value. x_t comes from the model being trained, as in the paper and
``esd_diffusers.py``: a batch of noise is partially denoised under c with DDIM (classifier-free guidance at the
model's ``guidance``) for k of ``ddim_steps`` steps, k uniform in 0..ddim_steps − 1 and drawn once per step, and
t is the k-th timestep of that schedule. No training images are read: each step takes a batch of the forget set
only for its labels (the class or classes to erase), so an epoch is ``len(forget) / batch_size`` steps.

Which weights train (``params``): ESD-x trains the cross-attention layers (``attn2`` in diffusers, where a text
condition enters), ESD-u everything else. A class-conditional ``UNet2DModel`` has no cross-attention: its class
enters through an embedding added to the timestep embedding of every residual block, so the default is
``"all"``: every UNet parameter, the class embedding included (the text encoder of a text-conditioned model stays
frozen, as in the reference). ``"cross_attention"`` (ESD-x) and ``"non_cross_attention"`` (ESD-u) choose the
reference's variants on a ``UNet2DConditionModel``; ``"cross_attention"`` is refused for a UNet without it.

Needs: the forget set's labels only; diffusion models.
Defaults: η = 1 (the paper's and ``esd_diffusers.py``'s ``negative_guidance``; ``esd_sd.py`` writes the target as
ε*(c) − η′·[ε*(c) − ε*(∅)], whose default η′ = 2 is the same target); Adam without weight decay, constant rate, as
the reference; partial sampling over the model's own DDIM schedule (``ddim_steps=None``: its ``sample_steps``, 25;
the reference uses 50 for a 1000-step schedule) with its guidance (w = 2, i.e. the reference's guidance scale 3 in
diffusers' convention). The paper trains Stable Diffusion for 1000 steps of one image at lr 1e-5
(``esd_diffusers.py``: 200 at 2e-5); here lr 1e-4 (``GenerativeArgs``), batches of 16 and 5 epochs (~45 steps on a
digits class), gradients clipped at norm 1: in single runs made when choosing these defaults (not benchmark results),
on the embedded digits model (``expunge.gen.unet()``) forgetting digit 3 took the share of its samples a logistic
regression of the real digits assigns to it from 93% to 3% and kept the other digits at 88% (lr 1e-3: 0% but 71%).
Grid: lr in {3e-5, 1e-4, 3e-4}, epochs in {2, 5, 10}, eta in {0.5, 1, 2}.

Deviations: (a) batches of 16 noise images per step instead of one (one k per batch, as the reference's one k per
step); (b) the gradients are clipped at norm 1; (c) ``params="all"`` also trains the normalisation layers and the
class embedding, which the reference's ``esd-all`` (Linear and Conv2d modules only) leaves out. The reference's
later ``esd_sd.py`` draws x_t from the frozen original instead; here, as in the paper and ``esd_diffusers.py``, from
the model being trained.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..training import batches
from ._common import frozen
from ._generative import GenerativeArgs, GenerativeMethod
from .base import Needs, clone, register

PARAMS = ("all", "cross_attention", "non_cross_attention")
CROSS_ATTENTION = "attn2"     # diffusers' name for the cross-attention of a transformer block


@dataclass
class ESDArgs(GenerativeArgs):
    epochs: int = 5
    batch_size: int = 16
    eta: float = 1.0
    params: str = "all"
    ddim_steps: int | None = None


def ddim_timesteps(model: nn.Module, steps: int) -> list[int]:
    """The timesteps of ``model``'s DDIM sampler over ``steps`` steps, from T − 1 down to 0."""
    return torch.linspace(model.T - 1, 0, steps, device="cpu").round().long().tolist()


@torch.no_grad()
def partially_denoised(model: nn.Module, labels: torch.Tensor, timesteps: list[int], k: int) -> torch.Tensor:
    """x at ``timesteps[k]``: fresh noise (torch's global RNG) after ``k`` guided DDIM steps (η = 0) under
    ``labels``, as ``DiffusionModel.sample`` takes them."""
    device = model.alphas_cumprod.device
    x = torch.randn((len(labels), *model.image_shape), device="cpu").to(device)   # on the CPU, as the sampler draws
    for i in range(k):
        eps = model.guided_eps(x, torch.full((len(x),), timesteps[i], device=device), labels)
        x = model.ddim_step(x, timesteps[i], timesteps[i + 1], eps)
    return x


def esd_parameters(model: nn.Module, which: str) -> list[nn.Parameter]:
    """The UNet parameters ESD trains: all, those of the cross-attention layers (ESD-x) or the others (ESD-u)."""
    named = list(model.unet.named_parameters())
    if which == "all":
        return [p for _, p in named]
    cross = [p for n, p in named if f".{CROSS_ATTENTION}." in f".{n}"]
    if which == "cross_attention":
        if not cross:
            raise ValueError(f"method 'esd': params='cross_attention' (ESD-x) needs a UNet with cross-attention "
                             f"(a text-conditioned UNet2DConditionModel); this {type(model.unet).__name__} has none; "
                             "use params='all'")
        return cross
    ids = {id(p) for p in cross}
    return [p for _, p in named if id(p) not in ids]


@register
class ESD(GenerativeMethod):
    name = "esd"
    summary = ("Diffusion: fine-tune the erased class's prediction toward the frozen original's unconditional "
               "prediction guided away from it (negative guidance), on the model's own partial samples.")
    paper = "Gandikota et al., Erasing Concepts from Diffusion Models, ICCV 2023 (ESD)"
    reference = "https://github.com/rohitgandikota/erasing"
    needs = Needs(retain=False, labels=True, forget_labels=True)
    Args = ESDArgs
    grid = {"lr": [3e-5, 1e-4, 3e-4], "epochs": [2, 5, 10], "eta": [0.5, 1.0, 2.0]}

    def validate(self) -> None:
        super().validate()
        a = self.args
        self.require(("eta", a.eta > 0, "a number > 0"),
                     ("params", a.params in PARAMS, f"one of {', '.join(PARAMS)}"),
                     ("ddim_steps", a.ddim_steps is None or a.ddim_steps >= 1, "None or an integer >= 1"))

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        params = esd_parameters(model, a.params)
        steps = model.sample_steps if a.ddim_steps is None else a.ddim_steps
        if not 1 <= steps <= model.T:
            raise ValueError(f"method 'esd': ddim_steps={steps} is not allowed; expected 1..{model.T} (the model's "
                             "timesteps)")
        timesteps = ddim_timesteps(model, steps)
        original = frozen(clone(model))
        null = original.null_class

        def loss_fn(model: nn.Module, batch: Any, ctx: Any) -> torch.Tensor:
            y = batch["forget"].y
            k = int(torch.randint(0, steps, (), device="cpu"))
            x_t = partially_denoised(model, y, timesteps, k)
            t = torch.full((len(y),), timesteps[k], device=x_t.device)
            with torch.no_grad():
                e_c = original.eps(x_t, t, y)
                e_null = original.eps(x_t, t, torch.full_like(y, null))
                target = e_null - a.eta * (e_c - e_null)
            return F.mse_loss(model.eps(x_t, t, y), target)

        return self.recipe_fit(model, batches(forget, a.batch_size, name="forget"), loss_fn, seed, params=params)
