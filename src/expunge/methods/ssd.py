"""Selective Synaptic Dampening (SSD): shrink the weights that matter far more to the forget set than to the data.

Paper: Foster et al., "Fast Machine Unlearning Without Retraining Through Selective Synaptic Dampening",
AAAI 2024. Reference: https://github.com/if-loops/selective-synaptic-dampening (``ssd.py``,
``ParameterPerturber.calc_importance`` and ``modify_weight``).

1. Importance of every parameter entry on a dataset X: I_X = mean over minibatches of (∇θ CE(batch))², a diagonal
   Fisher approximation, computed at the original weights in eval mode, on X = F and on X = D = F ∪ R.
2. Selection and dampening: wherever I_F > α·I_D, θ ← θ·min(λ·I_D / I_F, 1). Elsewhere θ is unchanged. The
   factor lies in [0, 1], so no weight grows in magnitude or changes sign.

No training step is taken; the retain set is read only as part of D.
Needs: forget and retain data with labels; classification.
Defaults: λ = 1, α = 10 (the paper's ResNet-18 setting; it uses α = 5 for ViT and α = 50, λ = 0.1 for face
data, and warns that "α can be quite sensitive"); minibatch 128 (the reference's forget loader).
Grid: alpha in {1, 2, 5, 10, 20, 50}, lam in {0.1, 0.5, 1}.

Deviation from the reference: the reference walks D as an unshuffled concatenation of R then F; here D and F are
shuffled under the seed before batching, so each minibatch of D is a sample of D rather than of R or F alone. The
reference takes the importance over all parameters (biases and norms included); so does this.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import targets
from ..devices import model_device, move
from ..training import Source
from ._common import relabelled_union
from .base import Method, Needs, register


@dataclass
class SSDArgs:
    alpha: float = 10.0
    lam: float = 1.0
    batch_size: int = 128
    prune_dense_then_recover: float | None = None


def importance(model: nn.Module, data: Dataset, batch_size: int, seed: int) -> dict[str, torch.Tensor]:
    """Mean over shuffled minibatches of the squared gradient of the batch's mean cross-entropy, per parameter."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    src = Source(data)
    chunks = src.order(torch.Generator().manual_seed(int(seed))).split(batch_size)
    was_training = model.training
    device = model_device(model)
    model.eval()
    try:
        for chunk in chunks:
            part = src.part(chunk)
            loss = F.cross_entropy(model(move(part.x, device)), move(part.y, device))
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for n, g in zip(params, grads):
                if g is not None:
                    total[n] += g.pow(2)
    finally:
        model.train(was_training)
    return {n: t / len(chunks) for n, t in total.items()}


def dampening_factors(forget_imp: torch.Tensor, data_imp: torch.Tensor, alpha: float,
                      lam: float) -> torch.Tensor:
    """Per-entry multipliers: min(λ·I_D/I_F, 1) where I_F > α·I_D, else 1."""
    selected = forget_imp > alpha * data_imp
    ratio = lam * data_imp / torch.where(selected, forget_imp, torch.ones_like(forget_imp))
    return torch.where(selected, ratio.clamp(max=1.0), torch.ones_like(forget_imp))


@register
class SSD(Method):
    name = "ssd"
    summary = "Dampen the weights far more important (diagonal Fisher) to the forget set than to the training data."
    paper = ("Foster et al., Fast Machine Unlearning Without Retraining Through Selective Synaptic Dampening, "
             "AAAI 2024")
    reference = "https://github.com/if-loops/selective-synaptic-dampening"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    tasks = ("classification",)
    Args = SSDArgs
    grid = {"alpha": [1.0, 2.0, 5.0, 10.0, 20.0, 50.0], "lam": [0.1, 0.5, 1.0]}

    def validate(self) -> None:
        super().validate()
        a = self.args
        self.require(("alpha", a.alpha > 0, "a number > 0"), ("lam", a.lam >= 0, "a number >= 0"),
                     ("batch_size", a.batch_size >= 1, "an integer >= 1"))

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        forget_imp = importance(model, forget, a.batch_size, seed)
        data_imp = importance(model, relabelled_union(forget, retain, targets(forget)), a.batch_size, seed)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in forget_imp:
                    p.mul_(dampening_factors(forget_imp[n], data_imp[n], a.alpha, a.lam))
        return model
