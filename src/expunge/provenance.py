"""What a model carries about its making: architecture, training recipe, data, method, wall time.

The record rides on the module object (copied with it) and is written to the JSON sidecar by ``save_model``.
``retrain`` reads the original's recipe from it; reports read the wall time for RTE. ``init_seed`` is the seed the
model's initial weights were drawn under: the user's seed for a model built by ``expunge.model``, a seed derived
from it (:mod:`expunge.seeds`) for an oracle, so the two never share an initialisation.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

_ATTR = "_expunge_provenance"


@dataclass
class Provenance:
    architecture: dict[str, Any] | None = None   # {"name": ..., "kwargs": {...}} when built by name
    recipe: dict[str, Any] | None = None         # the recipe that trained this model from scratch
    task: str | None = None
    num_outputs: int | None = None
    data_fingerprint: str | None = None          # of the data the model was trained on
    method: str | None = None                    # the unlearning method that produced it, if any
    method_args: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    init_seed: int | None = None                 # the seed its initial weights were drawn under (expunge.seeds)
    auxiliary_seeds: dict[str, int] = field(default_factory=dict)   # of networks built to make it (e.g. a teacher)
    sparse: dict[str, Any] | None = None         # a sparse model's mask record (expunge.sparsify)
    seconds: float | None = None                 # wall time of the step that produced it
    history: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Provenance":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def provenance(model: nn.Module) -> Provenance:
    """The model's record (an empty one for a model expunge has never touched)."""
    p = model.__dict__.get(_ATTR)
    if p is None:
        p = Provenance()
        model.__dict__[_ATTR] = p
    return p


def stamp(model: nn.Module, base: nn.Module | None = None, **updates: Any) -> Provenance:
    """Give ``model`` its own copy of the record of ``base`` (default: its own) with ``updates`` applied."""
    p = copy.deepcopy(provenance(base if base is not None else model))
    for k, v in updates.items():
        setattr(p, k, v)
    model.__dict__[_ATTR] = p
    return p
