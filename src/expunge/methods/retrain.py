"""Retrain: the exact oracle.

Re-initialise the model and train it on the retain set with the recipe that trained the original (same epochs,
optimiser, schedule, batch size), as recorded by ``expunge.train``. This is the reference every other method is
measured against ("exact unlearning"; e.g. Bourtoule et al., "Machine Unlearning", IEEE S&P 2021, and every
benchmark since). The OPTML-Group scripts use inconsistent recipes for the original and the oracle (160 vs 182
epochs); here the oracle always reuses the original's recipe, so the comparison is like for like.

Needs: retain data with labels. Defaults: the original's recipe; any recipe field given overrides it.
For a model trained outside expunge (no recorded recipe) pass at least ``epochs`` and ``lr``.
``init``: a function building a freshly initialised model, for architectures whose parameters are not all reset
by ``reset_parameters`` (a language model, ``expunge.lm.CausalLM``, and an image generator of
``expunge.gen`` re-initialise themselves from their configuration).
On a sparse original (``expunge.sparsify``) the oracle is the same sparse architecture: the carried mask is
applied to the fresh initialisation and held through training (the reference's ``main_forget.py`` retrains the
masked model from scratch).

Independence: the fresh initialisation is drawn under ``expunge.seeds.derive(seed, ORACLE_INIT)``, a stream of its
own, never under ``seed`` itself. The original built by ``expunge.model(..., seed=s)`` started from the weights
that seed ``s`` draws, so an oracle re-initialised under the same ``s`` would start exactly where the original did
and stay close to it in weight space. The derived seed is recorded as the oracle's ``init_seed`` (provenance);
batch order still follows ``seed``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import task_of
from ..provenance import provenance, stamp
from ..seeds import ORACLE_INIT, derive
from ..training import Recipe, batches, fit
from ._common import fresh_initialisation
from .base import Method, Needs, register


@dataclass
class RetrainArgs:
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    warmup: float | None = None
    clip_grad_norm: float | None = None
    loss: str | None = None
    prune_dense_then_recover: float | None = None
    init: Callable[[], nn.Module] | None = None


def oracle_init_seed(seed: int) -> int:
    """The seed the oracle for user seed ``seed`` is initialised under (its own stream, not ``seed``)."""
    return derive(seed, ORACLE_INIT)


@register
class Retrain(Method):
    name = "retrain"
    summary = "Exact oracle: fresh initialisation, trained on the retain set with the original's recipe."
    paper = "Bourtoule et al., Machine Unlearning, IEEE S&P 2021 (exact unlearning baseline)"
    reference = "https://github.com/OPTML-Group/Unlearn-Sparse (retrain baseline)"
    needs = Needs(retain=True, labels=True, forget_labels=False)
    tasks = ("classification", "regression", "language", "generation")
    forgets = True
    Args = RetrainArgs
    grid: dict[str, list[Any]] = {}

    def recipe_for(self, model: nn.Module) -> Recipe:
        recorded = provenance(model).recipe
        overrides = {f.name: getattr(self.args, f.name) for f in dataclasses.fields(Recipe)
                     if getattr(self.args, f.name, None) is not None}
        if recorded is None and not {"epochs", "lr"} <= set(overrides):
            raise ValueError("the original model carries no training recipe (it was not trained by expunge.train); "
                             "pass the recipe that trained it, at least epochs= and lr=, to retrain")
        return Recipe.from_dict({**(recorded or {}), **overrides})

    def unlearn(self, model: nn.Module, *, seed: int = 0, **kwargs) -> nn.Module:
        out = super().unlearn(model, seed=seed, **kwargs)
        stamp(out, init_seed=oracle_init_seed(seed), auxiliary_seeds={})
        return out

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        recipe = self.recipe_for(model)
        fresh = fresh_initialisation(model, oracle_init_seed(seed), self.args.init)
        self.masked(fresh)   # a sparse original's oracle: the same mask, from a fresh initialisation
        return fit(fresh, batches(retain, recipe.batch_size), recipe=recipe, task=task_of(retain), seed=seed,
                   name="retrain", step_hooks=self.step_hooks())
