"""Running an unlearning method K times (K seeds, from one original or K originals) as one ensemble.

Vectorised (all members trained together by :func:`~expunge.ensemble.fitting.fit_members`) for the methods that
are plain supervised training on the retain set:

- ``retrain`` (the oracle): member k is the original re-initialised under the oracle stream of ``seeds[k]``
  (``expunge.seeds.derive(seeds[k], ORACLE_INIT)``, as ``retrain`` does) and trained on its retain set with the
  original's recipe; with one original and K seeds these are K oracles;
- ``finetune``: member k continues training its original on its retain set with the method's recipe.

Both need retain sets of equal size over one base dataset, dense originals and no ``prune_dense_then_recover``
(masks differ per member, and the stacked fit does not pin them).
Every other method (and these two otherwise, or retrain when the originals' recipes differ) runs member by member
through ``Method.unlearn``, exactly as ``expunge.unlearn`` does, and the results are stacked. Either way member k
matches ``expunge.unlearn(originals[k], forget=forget[k], retain=retain[k], method=method, seed=seeds[k],
**args)`` (vectorised: up to floating-point rounding) and carries the same provenance record, except that
``seconds`` is the ensemble's wall time divided by K.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import resolve
from ..devices import check_precision, run_precision, run_scope, target_device
from ..methods import base as registry
from ..methods._common import fresh_initialisation
from ..methods.base import Method, check_request, clone, public_args
from ..methods.retrain import oracle_init_seed
from ..provenance import provenance, stamp
from .fitting import _fit_rows, check_seeds, member_rows
from .stacked import Ensemble

log = logging.getLogger(__name__)

VECTORISED = ("retrain", "finetune")


def unlearn(originals: nn.Module | Sequence[nn.Module], *, forget: Dataset | Sequence[Dataset],
            retain: Dataset | Sequence[Dataset] | None = None, method: str = "finetune", seeds: Sequence[int],
            hold_memory: bool = True, device: Any = None, precision: str | None = None, **args: Any) -> Ensemble:
    """Unlearn with ``method`` once per seed and return the K results as an :class:`Ensemble`.

    ``originals``: one model (used for every member) or one per seed; ``forget`` and ``retain``: one dataset for
    all members or one per member (over one base dataset). The originals are left untouched. ``args`` are the
    method's arguments; ``hold_memory``: see :func:`~expunge.ensemble.fitting.fit_members`. ``device`` and
    ``precision``: as for ``expunge.unlearn`` (default: the first original's device); the ensemble lives there.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a method name; got {type(method).__name__}")
    seeds = check_seeds(seeds)
    k = len(seeds)
    models = _per_member(originals, k, "originals")
    target = target_device(device, models[0]) if isinstance(models[0], nn.Module) else None
    if target is not None:
        precision = check_precision(run_precision(precision), target)
    forgets = _per_member(forget, k, "forget")
    retains = _per_member(retain, k, "retain")
    m = registry.get(method)(**args)
    checked: set[tuple[int, int, int]] = set()
    for o, f, r in zip(models, forgets, retains):
        if not isinstance(o, nn.Module):
            raise TypeError(f"originals must be torch nn.Modules; got {type(o).__name__}")
        if (id(o), id(f), id(r)) not in checked:
            check_request(o, f, r, m)
            checked.add((id(o), id(f), id(r)))
    start = time.perf_counter()
    starts, recipe = _vectorised_starts(m, models, seeds, retains)
    if starts is None:
        log.info("ensemble unlearn: %s runs member by member", m.name)
        with run_scope(target, precision):
            outs = [m.unlearn(o, forget=f, retain=r, seed=s, device=target)
                    for o, f, r, s in zip(models, forgets, retains, seeds)]
        return Ensemble(outs, seeds=seeds)
    base, rows = member_rows(retains, k)
    starts = [s.to(target) for s in starts]
    with run_scope(target, precision):
        ens = _fit_rows(starts, base, rows, seeds, recipe, f"ensemble {m.name}", hold_memory)
    seconds = (time.perf_counter() - start) / k

    def fresh(s: int) -> dict[str, Any]:   # an oracle's record names its own initialisation, as retrain's does
        return {"init_seed": oracle_init_seed(s), "auxiliary_seeds": {}} if m.name == "retrain" else {}

    ens.records = [stamp(w, o, method=m.name, method_args=public_args(m.args), seed=s, seconds=seconds,
                         history=provenance(o).history + [f"unlearn:{m.name}"], **fresh(s))
                   for w, o, s in zip(starts, models, seeds)]
    return ens


def _vectorised_starts(m: Method, models: list[nn.Module], seeds: list[int], retains: list) -> tuple:
    """The members' starting models and the shared recipe when ``m`` can run vectorised, else ``(None, None)``."""
    if m.name not in VECTORISED or getattr(m.args, "prune_dense_then_recover", None) \
            or any(r is None for r in retains) or any(provenance(o).sparse for o in models):
        return None, None
    if len({id(resolve(r)[0]) for r in retains}) > 1 or len({len(r) for r in retains}) > 1:
        return None, None       # retain sets over different data, or of different sizes: not in lock-step
    if m.name == "finetune":
        return [clone(o) for o in models], m.args.recipe()
    recipes = [m.recipe_for(o) for o in models]
    if any(r != recipes[0] for r in recipes[1:]):
        return None, None
    return [fresh_initialisation(o, oracle_init_seed(s), m.args.init) for o, s in zip(models, seeds)], recipes[0]


def _per_member(value: Any, k: int, what: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != k:
            raise ValueError(f"got {len(value)} {what} for {k} seed(s); give one per seed or one for all")
        return list(value)
    return [value] * k
