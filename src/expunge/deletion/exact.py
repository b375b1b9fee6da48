"""Exact service of a deletion request on a SISA ensemble: retrain only the shards that saw the rows.

A model trained as a SISA ensemble (:mod:`expunge.exact.sisa`; Bourtoule et al., "Machine Unlearning", IEEE S&P
2021) keeps its partition of the training rows into shards and slices and a checkpoint after every slice. Serving
a request removes its rows from their slices and retrains each affected shard from the checkpoint before its
earliest affected slice, through the registered ``sisa`` method. Every slice is its own seeded run, so the result
equals, bitwise, training those shards from scratch without the rows (same partition, same seeds); shards that held
none of the rows are left exactly as they were. That is why such a request is served *exactly*: no oracle is needed
to bound what remains of the rows.

The rows are named by position in ``data``, which must be the data the ensemble was trained on: the same object
(or a subset chain over it), or data with the same fingerprint (e.g. the same file loaded again).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import fingerprint, resolve
from ..exact.sisa import SISAEnsemble
from ..provenance import provenance


def is_sisa(model: Any) -> bool:
    """Whether ``model`` is a SISA ensemble, whose requests are served exactly by :func:`serve_exact`."""
    return isinstance(model, SISAEnsemble)


def positions(model: SISAEnsemble, data: Dataset, indices: Sequence[int] | np.ndarray) -> list[int]:
    """Positions in the ensemble's training data of rows ``indices`` of ``data``; ValueError when ``data`` is not
    the data the ensemble was trained on or a row is out of range."""
    rows = np.asarray(indices).reshape(-1)
    if rows.size == 0:
        raise ValueError("the request names no rows; nothing would be deleted")
    if not np.issubdtype(rows.dtype, np.integer):
        raise TypeError(f"indices must be integer row positions; got values of type {rows.dtype}")
    n = len(data)  # type: ignore[arg-type]
    if rows.min() < 0 or rows.max() >= n:
        bad = int(rows.min() if rows.min() < 0 else rows.max())
        raise ValueError(f"row {bad} is outside the {n} rows of the data (0..{n - 1})")
    if len(set(rows.tolist())) != len(rows):
        raise ValueError("the request names some row twice; name each row once")
    trained = model._data
    base, idx = resolve(data)
    if base is trained.base:
        missing = [int(r) for r in idx[rows].tolist() if r not in trained.row_to_position]
        if missing:
            raise ValueError(f"row(s) {missing[:5]} of the data were never in the ensemble's training data")
        return [trained.row_to_position[int(r)] for r in idx[rows].tolist()]
    recorded = provenance(model).data_fingerprint
    if n != len(trained.idx) or recorded is None or fingerprint(data) != recorded:
        raise ValueError("the data is not the data the SISA ensemble was trained on (its rows or fingerprint "
                         "differ); give the training data the ensemble was fitted on")
    return [int(r) for r in rows.tolist()]


def serve_exact(model: nn.Module, data: Dataset, indices: Sequence[int] | np.ndarray,
                seed: int = 0) -> tuple[SISAEnsemble, dict[str, Any]]:
    """A new SISA ensemble without rows ``indices`` of ``data`` (``model`` is left as it was) and what was done.

    ``info`` holds ``exact`` (True), ``method`` (``sisa``), ``removed`` (rows), ``shards`` and ``slices`` (the
    ensemble's shape), ``retrained`` (shard -> first retrained slice, as strings for JSON), ``retrained_shards``,
    ``untouched_shards``, ``example_epochs`` (the cost, in examples × epochs) with ``full_retrain_example_epochs``
    (what retraining every shard from scratch would cost) and ``seconds``. ``seed`` is recorded on the new model;
    the ensemble's own seeds decide every retrained slice, which is what makes the result exact.
    """
    from ..api import unlearn

    if not is_sisa(model):
        raise TypeError(f"exact service needs a SISA ensemble (expunge.exact.sisa.SISA(...).fit(model, train)); "
                        f"got {type(model).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer; got {seed!r}")
    assert isinstance(model, SISAEnsemble)
    where = positions(model, data, indices)
    held = {p for shard in model.partition for sl in shard for p in sl}
    gone = sorted(set(where) - held)
    if gone:
        raise ValueError(f"{len(gone)} row(s) of the request were already deleted from the ensemble "
                         f"(training positions {gone[:5]}); a row can be deleted once")
    forget = model._data.subset(where)
    out = unlearn(model, forget=forget, method="sisa", seed=int(seed))
    assert isinstance(out, SISAEnsemble) and out.last_deletion is not None
    done = out.last_deletion
    shards = model.config.shards
    full = sum(model.config.slice_epochs()[r] * sum(len(sl) for sl in out.partition[s][:r + 1])
               for s in range(shards) for r in range(model.config.slices))
    info = {
        "exact": True,
        "method": "sisa",
        "removed": done.removed,
        "shards": shards,
        "slices": model.config.slices,
        "retrained": {str(s): r for s, r in done.from_slice.items()},
        "retrained_shards": sorted(done.from_slice),
        "untouched_shards": [s for s in range(shards) if s not in done.from_slice],
        "example_epochs": done.example_epochs,
        "full_retrain_example_epochs": full,
        "seconds": done.seconds,
        "seed": int(seed),
    }
    return out, info


__all__ = ["is_sisa", "serve_exact", "positions"]
