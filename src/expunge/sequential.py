"""Deletion requests served one after another: MUSE's *sustainability* (Shi et al., "MUSE: Machine Unlearning
Six-Way Evaluation for Language Models", ICLR 2025), for any task.

Request k unlearns its own rows from the model request k − 1 left, with the rows not yet forgotten as retain
data; after each step the model is scored on everything forgotten so far, against an oracle retrained without all
of it (the original's recipe, as ``retrain`` always does). A method that forgets once but drifts when used again
shows here as gaps that grow with k, and as retain scores that fall.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from torch import nn
from torch.utils.data import Dataset

from .data.datasets import resolve
from .data.forget import split_forget


@dataclass
class SequenceStep:
    """One served request: the model after it, its scores (on every row forgotten so far, against the oracle of
    that union when oracles are trained) and the sizes involved."""

    model: nn.Module
    scores: dict[str, float]
    forgotten: int          # rows forgotten so far
    request_size: int       # rows of this request
    oracle: nn.Module | None = field(default=None, repr=False)


def _positions(data: Dataset, request: Any, k: int) -> np.ndarray:
    """Row positions in ``data`` of request ``k``: a Subset/Split of ``data`` or a sequence of positions."""
    base, _ = resolve(data)
    indices = getattr(request, "indices", request)
    if hasattr(request, "dataset") and resolve(request.dataset)[0] is not base:
        raise ValueError(f"request {k + 1} is a subset of another dataset; give subsets of the training data")
    try:
        pos = np.asarray(indices, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"request {k + 1} must be a subset of the training data or a list of row positions") from None
    if len(pos) == 0:
        raise ValueError(f"request {k + 1} is empty; every request must name at least one row")
    if pos.min() < 0 or pos.max() >= len(data):  # type: ignore[arg-type]
        raise ValueError(f"request {k + 1} names row {int(pos.max() if pos.max() >= 0 else pos.min())}, outside "
                         f"the {len(data)} rows of the training data")  # type: ignore[arg-type]
    return pos


def unlearn_sequence(original: nn.Module, data: Dataset, requests: Sequence[Any], *, method: str, seed: int = 0,
                     oracles: bool | Sequence[nn.Module] = True, evaluate_args: dict[str, Any] | None = None,
                     **method_args: Any) -> list[SequenceStep]:
    """Serve ``requests`` (each a subset of ``data``, the original's training set, or a list of its row positions)
    in order with ``method`` and ``method_args``; return one :class:`SequenceStep` per request.

    Step k runs ``unlearn(model_{k-1}, forget=request k, retain=rows never asked for yet, seed=seed + k)``. With
    ``oracles=True`` it also retrains the original without every row asked for so far (``seed``) and scores
    step k's model against it with :func:`expunge.evaluate` on those rows (``evaluate_args``: e.g. ``test=``,
    ``world=`` for language models); without, scores have no gaps. ``oracles`` may also be the list of those
    union oracles, one per request, trained before (e.g. by :func:`union_oracles`, shared between methods served the
    same requests). Requests must be disjoint.
    """
    from . import api
    from .evaluate import evaluate

    if isinstance(requests, (str, bytes)) or not isinstance(requests, Sequence) or len(requests) == 0:
        raise ValueError("requests must be a non-empty list of forget requests (subsets of the data or row lists)")
    positions = [_positions(data, r, k) for k, r in enumerate(requests)]
    seen: set[int] = set()
    for k, pos in enumerate(positions):
        overlap = seen & set(pos.tolist())
        if overlap:
            raise ValueError(f"request {k + 1} repeats row {min(overlap)} of an earlier request; requests must be "
                             "disjoint")
        seen |= set(pos.tolist())
    if len(seen) >= len(data):  # type: ignore[arg-type]
        raise ValueError("the requests together cover every training row; nothing would be left to retain")
    given = None if isinstance(oracles, bool) else list(oracles)
    if given is not None and (len(given) != len(positions) or not all(isinstance(o, nn.Module) for o in given)):
        raise ValueError(f"oracles must be True, False or a list of {len(positions)} models (one per request)")
    steps: list[SequenceStep] = []
    model, forgotten = original, np.zeros(0, dtype=np.int64)
    for k, pos in enumerate(positions):
        forgotten = np.concatenate([forgotten, pos])
        request = split_forget(data, indices=pos)[0]
        union, retain = split_forget(data, indices=forgotten)
        model = api.unlearn(model, forget=request, retain=retain, method=method, seed=seed + k, **method_args)
        oracle = (given[k] if given is not None else
                  api.unlearn(original, forget=union, retain=retain, method="retrain", seed=seed) if oracles else None)
        scores = evaluate(model, forget=union, retain=retain, reference=oracle, **(evaluate_args or {}))
        steps.append(SequenceStep(model, scores, len(forgotten), len(pos), oracle))
    return steps


def union_oracles(original: nn.Module, data: Dataset, requests: Sequence[Any], *, seed: int = 0) -> list[nn.Module]:
    """The oracles :func:`unlearn_sequence` trains: ``original`` retrained (``seed``) without the union of requests
    1..k, for every k."""
    from . import api

    forgotten, out = np.zeros(0, dtype=np.int64), []
    for k, r in enumerate(requests):
        forgotten = np.concatenate([forgotten, _positions(data, r, k)])
        union, retain = split_forget(data, indices=forgotten)
        out.append(api.unlearn(original, forget=union, retain=retain, method="retrain", seed=seed))
    return out
