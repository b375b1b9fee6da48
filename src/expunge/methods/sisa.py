"""SISA deletion: exact unlearning for a model that was trained as a SISA ensemble.

Paper: Bourtoule et al., "Machine Unlearning", IEEE S&P 2021.
Reference: https://github.com/cleverhans-lab/machine-unlearning.
The original must be a :class:`expunge.exact.sisa.SISAEnsemble` (``SISA(shards=..., slices=...).fit(model,
train)``); the forget set must be drawn from the same ``train`` (e.g. by ``split_forget``). The forget examples
are removed from their slices and only the shards that held them are retrained, each from the checkpoint before
its earliest affected slice. The result is identical to training the ensemble from scratch without the forget set
(same partition and seeds), so the method takes no ``seed`` of its own: the ensemble's seeds decide.

Needs: the forget set (which examples; its labels are not read); the retain set is not read: the ensemble keeps
its own training data. Classification and regression. No hyperparameters, so no grid; the ensemble's shape
(shards, slices) is chosen when it is trained.
"""
from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.data import Dataset

from ..exact.sisa import SISAEnsemble
from .base import Method, Needs, NoArgs, register


@register
class Sisa(Method):
    name = "sisa"
    summary = "Exact deletion from a SISA ensemble: retrain only the affected shards from their last clean slice."
    paper = "Bourtoule et al., Machine Unlearning, IEEE S&P 2021"
    reference = "https://github.com/cleverhans-lab/machine-unlearning"
    needs = Needs(retain=False, labels=False, forget_labels=False)
    needs_special_original = True     # a SISA ensemble, not an ordinary trained model
    Args = NoArgs
    grid: dict[str, list[Any]] = {}

    def unlearn(self, model: nn.Module, *, forget: Dataset, retain: Dataset | None = None,
                seed: int = 0, device: torch.device | None = None) -> nn.Module:
        if not isinstance(model, SISAEnsemble):
            raise ValueError("sisa unlearns a SISA ensemble; build one with expunge.exact.sisa.SISA(shards=..., "
                             f"slices=...).fit(model, train) and unlearn that (got a {type(model).__name__})")
        return super().unlearn(model, forget=forget, retain=retain, seed=seed, device=device)

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        assert isinstance(model, SISAEnsemble)
        model.delete_(model.positions_of(forget))
        return model
