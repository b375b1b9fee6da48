"""MSG, Masked Small Gradients: re-initialise the weights that matter least for telling retain from forget data,
damp the gradients of the rest, and fine-tune on the retain set.

Paper: the second-place solution of the NeurIPS 2023 Machine Unlearning Challenge (Kaggle), as re-implemented and
named in Cadet et al., "Deep Unlearn: Benchmarking Machine Unlearning for Image Classification", arXiv:2410.01276,
2024, which finds it among the most consistent methods.
Reference: https://github.com/xcadet/deepunlearn (``munl/unlearning/kgltop2.py``).

1. Score every weight of the selected layers by |g| with g = ∇θ[CE(θ0; R') − CE(θ0; F)], where R' is a random
   subset of the retain set as large as the forget set.
2. In each selected layer separately, the ``init_rate`` fraction of weights with the smallest |g| (exactly
   round(init_rate · size) of them; ties broken by position) is re-initialised from a Kaiming normal (fan_out,
   ReLU) draw under the seed; the other weights keep θ0.
3. Fine-tune on R with CE, the gradients of the kept weights of the selected layers multiplied by ``grad_scale``
   (the re-initialised ones and every other parameter get their full gradient).

Selected layers (``layers``): ``conv`` = every convolution weight (the reference: ``nn.Conv2d``; here Conv1d/3d
too); ``linear`` = every ``nn.Linear`` weight; ``all`` = both; ``auto`` (default) = ``conv`` when the model has
convolutions, else ``linear``. Treating linear weights like convolution weights on a model without convolutions
(e.g. an MLP) is an extension of the method, which was designed for CNNs.

Needs: forget and retain data with labels; classification.
Defaults: the reference's constants in ``kgltop2.py`` (``KGLTop2.ORIGINAL_INIT_RATE`` 0.3, ``ORIGINAL_NUM_EPOCHS``
5, ``ORIGINAL_LR`` 1e-3, ``ORIGINAL_MOMENTUM`` 0.9, ``ORIGINAL_WEIGHT_DECAY`` 5e-4, ``ORIGINAL_BATCH_SIZE`` 64),
grad_scale 0.1 (its gradient mask, ``grad_mask[grad_mask == 0] += 0.1``), SGD, the learning rate rising linearly
for the first half of the run and falling linearly after.
Grid (DeepUnlearn tunes lr log-uniformly in [1e-5, 1e-1], epochs, batch size and init_rate in [0, 1]):
lr in {1e-4, 1e-3, 1e-2, 0.05}, epochs in {3, 5, 10}, init_rate in {0.1, 0.3, 0.5}, grad_scale in {0.1, 0.3}.

Deviations from the reference: (a) g is the gradient of the two means (R' and F), taken at θ0 in eval mode; the
reference sums per-batch means (batch 64) in whatever mode the model is in, so in training mode its scoring pass
also updates batch-norm statistics. (b) The reference swaps each convolution for a fresh one, which also
re-initialises the convolution's bias; here biases keep θ0 (the method re-initialises selected weights only).
(c) The reference changes the learning rate once per epoch (1/3, 2/3, 1, 2/3, 1/3 of lr over 5 epochs); here it
changes every step (``warmup`` 0.5, ``schedule`` linear), rising to lr at mid-run and decaying to 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from ..training import batches, fit, mask_gradients
from ._common import ce_gradient
from .base import Method, Needs, TrainArgs, register

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
LAYERS = ("auto", "conv", "linear", "all")


@dataclass
class MSGArgs(TrainArgs):
    epochs: int = 5
    lr: float = 1e-3
    schedule: str = "linear"
    warmup: float = 0.5
    init_rate: float = 0.3
    grad_scale: float = 0.1
    layers: str = "auto"


def selected_weights(model: nn.Module, layers: str) -> dict[str, nn.Parameter]:
    """The weights MSG works on, by parameter name (see ``layers`` in the module docstring)."""
    if layers not in LAYERS:
        raise ValueError(f"layers={layers!r} is not allowed; expected one of {', '.join(LAYERS)}")
    convs = {f"{n}.weight" if n else "weight": m.weight for n, m in model.named_modules() if isinstance(m, CONV)}
    linears = {f"{n}.weight" if n else "weight": m.weight for n, m in model.named_modules()
               if isinstance(m, nn.Linear)}
    if layers == "auto":
        layers = "conv" if convs else "linear"
    chosen = {"conv": convs, "linear": linears, "all": {**convs, **linears}}[layers]
    if not chosen:
        kind = "convolution" if layers == "conv" else "nn.Linear or convolution" if layers == "all" else "nn.Linear"
        raise ValueError(f"layers={layers!r}: the model ({type(model).__name__}) has no {kind} layer")
    return chosen


def score_gradient(model: nn.Module, forget: Dataset, retain: Dataset, names: list[str],
                   generator: torch.Generator) -> dict[str, torch.Tensor]:
    """g = ∇θ[CE(R') − CE(F)], each CE a mean over its examples, at the current weights (eval mode) for the
    parameters in ``names``; R' is a random subset of ``retain`` as large as ``forget``."""
    named = dict(model.named_parameters())
    params = {n: named[n] for n in names}
    sub = Subset(retain, torch.randperm(len(retain), generator=generator, device="cpu")[:len(forget)].tolist())
    g_r, g_f = ce_gradient(model, sub, params, mean=True), ce_gradient(model, forget, params, mean=True)
    return {n: g_r[n] - g_f[n] for n in names}


def smallest_fraction_masks(scores: dict[str, torch.Tensor], rate: float) -> dict[str, torch.Tensor]:
    """Per tensor, a boolean mask of its round(rate · size) entries with the smallest score (ties by position)."""
    masks = {}
    for name, s in scores.items():
        flat = s.flatten()
        keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
        keep[torch.argsort(flat, stable=True)[:int(round(rate * flat.numel()))]] = True
        masks[name] = keep.reshape(s.shape)
    return masks


def reinitialise(model: nn.Module, masks: dict[str, torch.Tensor], generator: torch.Generator) -> None:
    """Replace the masked entries of each named weight by a Kaiming normal (fan_out, ReLU) draw (drawn on the CPU
    from ``generator``, then moved to the weight's device)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, m in masks.items():
            p = params[name]
            fresh = torch.empty(p.shape, dtype=p.dtype, device="cpu")
            nn.init.kaiming_normal_(fresh, mode="fan_out", nonlinearity="relu", generator=generator)
            p.copy_(torch.where(m, fresh.to(p.device), p))


def gradient_scales(masks: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """1 at re-initialised entries, ``scale`` at the kept ones (for ``training.mask_gradients``)."""
    return {n: torch.where(m, torch.ones((), dtype=torch.float32, device=m.device),
                           torch.tensor(scale, device=m.device)) for n, m in masks.items()}


@register
class MSG(Method):
    name = "msg"
    summary = ("Re-initialise the weights with the smallest retain-minus-forget gradient, damp the others' "
               "gradients, fine-tune on retain.")
    paper = ("NeurIPS 2023 Machine Unlearning Challenge, 2nd place (MSG), as in Cadet et al., Deep Unlearn: "
             "Benchmarking Machine Unlearning for Image Classification, arXiv:2410.01276, 2024")
    reference = "https://github.com/xcadet/deepunlearn"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    tasks = ("classification",)
    Args = MSGArgs
    grid = {"lr": [1e-4, 1e-3, 1e-2, 0.05], "epochs": [3, 5, 10], "init_rate": [0.1, 0.3, 0.5],
            "grad_scale": [0.1, 0.3]}

    def validate(self) -> None:
        super().validate()
        a = self.args
        self.require(("init_rate", 0 <= a.init_rate <= 1, "a fraction in [0, 1]"),
                     ("grad_scale", a.grad_scale >= 0, "a number >= 0"),
                     ("layers", a.layers in LAYERS, " / ".join(LAYERS)))

    def masks(self, model: nn.Module, forget: Dataset, retain: Dataset, seed: int) -> dict[str, torch.Tensor]:
        """The re-initialisation masks (True = re-initialised) per selected weight."""
        names = list(selected_weights(model, self.args.layers))
        g = score_gradient(model, forget, retain, names, torch.Generator().manual_seed(int(seed) + 1))
        return smallest_fraction_masks({n: v.abs() for n, v in g.items()}, self.args.init_rate)

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        masks = self.masks(model, forget, retain, seed)
        reinitialise(model, masks, torch.Generator().manual_seed(int(seed) + 2))
        return fit(model, batches(retain, a.batch_size, name="data"), recipe=a.recipe(), task="classification",
                   seed=seed, name=self.name, grad_hooks=[mask_gradients(gradient_scales(masks, a.grad_scale))],
                   step_hooks=self.step_hooks())
