"""Blindspot unlearning for regression: pull the forget set toward a proxy model that never saw it.

Paper: Tarun et al., "Deep Regression Unlearning", ICML 2023.
Reference: https://github.com/ayushkumartarun/deep-regression-unlearning (``unlearn.py``, the AgeDB notebook).

1. A *blindspot* (proxy) model, freshly initialised with the original's architecture, is trained on the retain
   set for ``proxy_epochs`` (2) with Adam at ``proxy_lr`` (0.01), L1 loss: it has seen R but never F. Its
   initialisation is drawn under ``expunge.seeds.derive(seed, BLINDSPOT_PROXY_INIT)``, never under ``seed``
   itself (which would rebuild the original's own initial weights), and recorded in the result's
   ``auxiliary_seeds``.
2. A copy of the original is fine-tuned for ``epochs`` (1) on all of D = F ∪ R (shuffled together) with Adam at
   ``lr`` (1e-3), L1 loss. For a batch with forget fraction ``c``:
   ``loss = c·[L1(out_F, proxy_F) + beta·Σ_layers AT(act_F, proxy_act_F)] + (1 − c)·L1(out_R, y_R)``,
   where AT(a, b) = mean((att(a) − att(b))²) and att(x) = normalise(mean over channels of x²), flattened
   (attention transfer, Zagoruyko & Komodakis), ``beta`` = 50.

Activations are collected with forward hooks on the activation modules (ReLU, GELU, ...) of both models, or on
the modules named in ``at_layers``. An MLP's hidden activations (batch × units) have no channel axis, so each unit
counts as one position: att(x) = normalise(x²).

Needs: forget and retain data; the retain set's labels (the forget set's labels are never read); regression only.
Defaults are the reference's (``AgeDB_AllCNN_0to30_forgetting.ipynb``): unlearning ``epochs = 1`` and ``lr = 0.001``
in its ``fit_one_forget_cycle`` call, Adam without weight decay (``unlearn.py``), L1 loss and ``AT_beta = 50``
(``unlearn.forget_loss``); the proxy ``epochs = 2`` in its ``fit_one_cycle`` call, at that function's default
``lr=0.01`` (``utils.py``, Adam) — except the batch size: 64 (the project's default) instead of 256, which suits
AgeDB's ~12k images but leaves too few steps on a few thousand rows (Friedman-1, 4800 rows: W1 to the oracle 0.46 at
256 vs 0.12 at 64). The proxy is built with ``init`` (a function returning a fresh model) when given, else by
re-initialising every module of the original. A model with no activation modules and no ``at_layers`` gets no
attention term.
Grid: lr in {1e-4, 5e-4, 1e-3, 5e-3}, epochs in {1, 2, 3}, beta in {0, 10, 50}, proxy_epochs in {1, 2, 5}.

Deviations from the reference: the reference's AllCNN returns its intermediate activations from ``forward``; here
forward hooks collect them from any ``nn.Module``. The reference keeps the proxy in eval mode; so does this.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import ArrayDataset, features, resolve, targets
from ..provenance import stamp
from ..seeds import BLINDSPOT_PROXY_INIT, derive
from ..training import Batch, Recipe, StepContext, batches, fit, regression_output
from ._common import fresh_initialisation
from .base import Method, Needs, TrainArgs, register

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.ReLU6, nn.Mish)


@dataclass
class BlindspotArgs(TrainArgs):
    epochs: int = 1
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    proxy_epochs: int = 2
    proxy_lr: float = 0.01
    beta: float = 50.0
    at_layers: list[str] | None = None
    init: Callable[[], nn.Module] | None = None


def attention(x: torch.Tensor) -> torch.Tensor:
    """Attention map of activations ``x``: normalise(mean over channels of x²), one row per example; for
    ``batch × units`` activations each unit is a position (normalise(x²))."""
    a = x.pow(2)
    a = a.mean(1) if a.ndim > 2 else a
    return F.normalize(a.reshape(len(a), -1), dim=1)


def attention_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (attention(x) - attention(y)).pow(2).mean()


class Activations:
    """Forward hooks recording the outputs of chosen modules, in call order, while ``recording``."""

    def __init__(self, model: nn.Module, layers: list[str] | None):
        modules = dict(model.named_modules())
        if layers is not None:
            unknown = [n for n in layers if n not in modules]
            if unknown:
                raise ValueError(f"method 'blindspot': at_layers names unknown module(s) {unknown}; "
                                 f"modules: {', '.join(n for n in modules if n)}")
            chosen = [modules[n] for n in layers]
        else:
            chosen = [m for m in modules.values() if isinstance(m, ACTIVATIONS)]
        self.outputs: list[torch.Tensor] = []
        self.recording = False
        self.handles = [m.register_forward_hook(self._hook) for m in chosen]

    def _hook(self, module: nn.Module, inputs, output) -> None:
        if self.recording:
            self.outputs.append(output)

    def run(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self.outputs, self.recording = [], True
        try:
            out = model(x)
        finally:
            self.recording = False
        acts, self.outputs = self.outputs, []
        return out, acts

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def union_with_flags(forget: Dataset, retain: Dataset) -> tuple[ArrayDataset, int]:
    """D = F followed by R as one dataset; positions below the returned count are forget examples. The forget
    set's targets are replaced by zeros: they are never read."""
    base, _ = resolve(retain)
    xf, xr, yr = features(forget), features(retain), targets(retain)
    yf = torch.zeros((len(xf),) + tuple(yr.shape[1:]), dtype=yr.dtype, device=yr.device)
    return ArrayDataset(torch.cat([xf, xr]), torch.cat([yf, yr]), task=base.task), len(xf)


@register
class Blindspot(Method):
    name = "blindspot"
    summary = "Match a proxy trained only on the retain set on the forget set (outputs + attention), keep retain."
    paper = "Tarun et al., Deep Regression Unlearning, ICML 2023"
    reference = "https://github.com/ayushkumartarun/deep-regression-unlearning"
    needs = Needs(retain=True, labels=True, forget_labels=False)
    tasks = ("regression",)
    Args = BlindspotArgs
    grid = {"lr": [1e-4, 5e-4, 1e-3, 5e-3], "epochs": [1, 2, 3], "beta": [0.0, 10.0, 50.0],
            "proxy_epochs": [1, 2, 5]}

    def validate(self) -> None:
        super().validate()
        a = self.args
        self.require(("beta", a.beta >= 0, "a number >= 0"), ("proxy_epochs", a.proxy_epochs >= 1, "an integer >= 1"),
                     ("proxy_lr", a.proxy_lr > 0, "a number > 0"))

    def proxy(self, model: nn.Module, retain: Dataset, seed: int) -> nn.Module:
        """The blindspot model: fresh weights, a few epochs on the retain set."""
        a = self.args
        fresh = fresh_initialisation(model, derive(seed, BLINDSPOT_PROXY_INIT), a.init)
        recipe = Recipe(epochs=a.proxy_epochs, lr=a.proxy_lr, batch_size=a.batch_size, optimizer="adam",
                        weight_decay=0.0, schedule="constant", loss="l1")
        return fit(fresh, batches(retain, a.batch_size), recipe=recipe, task="regression", seed=seed,
                   name="blindspot proxy")

    def unlearn(self, model: nn.Module, *, seed: int = 0, **kwargs) -> nn.Module:
        out = super().unlearn(model, seed=seed, **kwargs)
        stamp(out, auxiliary_seeds={"blindspot_proxy": derive(seed, BLINDSPOT_PROXY_INIT)})
        return out

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        proxy = self.proxy(model, retain, seed).eval()
        data, n_forget = union_with_flags(forget, retain)
        ours, theirs = Activations(model, a.at_layers), Activations(proxy, a.at_layers)

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            part = batch["data"]
            x = part.x
            is_f = (part.positions < n_forget).to(x.device)
            out, acts = ours.run(m, x)
            loss = out.new_zeros(())
            coeff = float(is_f.float().mean())
            if bool(is_f.any()):
                with torch.no_grad():
                    p_out, p_acts = theirs.run(proxy, x[is_f])
                forget_term = F.l1_loss(out[is_f], p_out)
                for act, p_act in zip(acts, p_acts):
                    forget_term = forget_term + a.beta * attention_distance(act[is_f], p_act)
                loss = loss + coeff * forget_term
            if not bool(is_f.all()):
                y = part.y[~is_f]
                loss = loss + (1 - coeff) * F.l1_loss(regression_output(out[~is_f], y), y)
            return loss

        try:
            return fit(model, batches(data, a.batch_size), recipe=a.recipe(loss="l1"), task="regression",
                       seed=seed, name=self.name, loss_fn=loss_fn, step_hooks=self.step_hooks())
        finally:
            ours.remove()
            theirs.remove()
