"""A stream of deletion requests served one after another, measured as MUSE's *sustainability* does (Shi et al.,
"MUSE: Machine Unlearning Six-Way Evaluation for Language Models", ICLR 2025).

:func:`stream` serves requests in order, each from the model the previous step left (``group_size`` consecutive
requests served together as one step), through :func:`expunge.sequential.unlearn_sequence`. After each step it
scores the model on every row forgotten so far, on the rows still kept and on the test set, against the oracle
retrained without all of them: retain and test accuracy and the gaps to that oracle show whether a method that
forgets one request well drifts when used again and again. ``expunge forget --batch FILE`` reads its file with
:func:`read_batch` and serves the requests one after another, each certified on its own
(:func:`expunge.deletion.forget.serve_batch`); :func:`stream` is the measurement of such a sequence.

Requests are request expressions (``ids:FILE``, ``group:17``, ``class:3``, ``where:...``; parsed with
:func:`expunge.deletion.request.parse_request` against ``data``), parsed requests, subsets of ``data`` or lists of
row positions. They must be disjoint: a row is forgotten once. Everything is checked before any work starts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
from torch import nn
from torch.utils.data import Dataset

from ..provenance import provenance

MAX_BATCH_BYTES = 1_000_000     # the most a batch file may hold
SCORE_KEYS = ("forget_acc", "retain_acc", "test_acc", "ua", "mia_efficacy", "forget_mae", "retain_mae", "test_mae",
              "avg_gap", "w1_to_reference")


@dataclass
class StreamStep:
    """One served step: the requests it served, its rows, the rows forgotten so far, its scores (against the union
    oracle when one was trained) and the method's seconds."""

    step: int
    requests: list[str]
    rows: int
    forgotten: int
    scores: dict[str, float]
    seconds: float | None
    model: nn.Module = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The step as plain JSON values (the model left out)."""
        scores = {k: float(v) for k, v in self.scores.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return {"step": self.step, "requests": list(self.requests), "rows": self.rows, "forgotten": self.forgotten,
                "seconds": self.seconds, "scores": scores}


@dataclass
class StreamResult:
    """What :func:`stream` did: the final model and one :class:`StreamStep` per step."""

    model: nn.Module
    steps: list[StreamStep]
    method: str
    args: dict[str, Any]
    group_size: int
    seed: int
    oracles: bool

    def table(self) -> list[dict[str, Any]]:
        """One row per step: step, rows forgotten so far and the headline scores present (retain and test accuracy,
        Avg. Gap to the union oracle, ...)."""
        return [{"step": s.step, "forgotten": s.forgotten,
                 **{k: s.scores[k] for k in SCORE_KEYS if k in s.scores}} for s in self.steps]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "args": dict(self.args), "group_size": self.group_size, "seed": self.seed,
                "oracles": self.oracles, "steps": [s.to_dict() for s in self.steps]}


def read_batch(path: str | Path) -> list[str]:
    """The request expressions of a batch file: one per line; blank lines and lines starting with ``#`` are
    skipped. ValueError naming the file when it is missing, too large or holds no request."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"batch file {str(p)!r} does not exist or is not a file")
    if p.stat().st_size > MAX_BATCH_BYTES:
        raise ValueError(f"batch file {str(p)!r} is larger than {MAX_BATCH_BYTES:,} bytes; split the requests")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"batch file {str(p)!r} is not UTF-8 text (one request expression per line)") from None
    lines = [line.strip() for line in text.splitlines()]
    exprs = [line for line in lines if line and not line.startswith("#")]
    if not exprs:
        raise ValueError(f"batch file {str(p)!r} holds no request (one request expression per line, e.g. group:17)")
    return exprs


def dataset_of(data: Any) -> Dataset:
    """The training dataset of ``data``: a dataset itself, or a loaded data file's ``.dataset``."""
    dataset = data if isinstance(data, Dataset) else getattr(data, "dataset", None)
    if not isinstance(dataset, Dataset):
        raise TypeError(f"data must be a torch Dataset or a loaded data file; got {type(data).__name__}")
    return dataset


def request_rows(data: Any, request: Any, k: int) -> tuple[str, np.ndarray]:
    """``(label, row positions)`` of request ``k`` (counted from 0) of a stream: an expression is parsed with
    ``parse_request`` (``data`` may be a loaded data file, whose columns and ids it reads); a parsed request, a
    subset of the data or a list of positions gives its rows."""
    dataset = dataset_of(data)
    if isinstance(request, str):
        from .request import parse_request

        try:   # a subset is read as itself (a bare subset would be read through to the data it was drawn from)
            request = parse_request(request, SimpleNamespace(dataset=data) if isinstance(data, Dataset) else data)
        except (ValueError, TypeError) as e:
            raise type(e)(f"request {k + 1}: {e}") from None
    label = getattr(request, "expr", None)
    if hasattr(request, "dataset") and hasattr(request, "indices"):
        from ..data.datasets import resolve

        if resolve(request.dataset)[0] is not resolve(dataset)[0]:
            raise ValueError(f"request {k + 1} is a subset of another dataset; give subsets of the training data")
    rows = getattr(request, "indices", request)
    try:
        pos = np.asarray(rows, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"request {k + 1} must be a request expression, a parsed request, a subset of the data or "
                        f"a list of row positions; got {type(request).__name__}") from None
    if pos.size == 0:
        raise ValueError(f"request {k + 1} names no rows; every request must name at least one row")
    n = len(dataset)  # type: ignore[arg-type]
    if pos.min() < 0 or pos.max() >= n:
        raise ValueError(f"request {k + 1} names row {int(pos.min() if pos.min() < 0 else pos.max())}, outside the "
                         f"{n} rows of the data")
    return (str(label) if label is not None else f"{pos.size} rows"), pos


def stream(model: nn.Module, data: Any, requests: Sequence[Any], *, method: str,
           args: dict[str, Any] | None = None, group_size: int = 1, seed: int = 0,
           oracles: bool | Sequence[nn.Module] = True, test: Dataset | None = None) -> StreamResult:
    """Serve ``requests`` in order with ``method`` (``args``), ``group_size`` consecutive requests per step; return
    the final model and, per step, retain/test accuracy and the gaps to the oracle retrained without every request so
    far (``oracles=False``: no oracles, no gaps; or the list of those oracles, one per step, trained before).

    ``model`` is the model the first request is served from, trained on ``data`` (a dataset, or a loaded data file
    whose ``.dataset`` it is: expressions then read its columns and ids); ``test`` (optional) the held-out
    data scored at every step. Step k unlearns with seed ``seed + k``; the oracles retrain with ``seed``. A SISA
    ensemble (:mod:`expunge.exact.sisa`) is served exactly with method ``sisa``: each step retrains the shards that
    held its rows and equals retraining them without every row so far, so no oracle is trained. Bad input raises
    ValueError/TypeError naming the request or argument, before any work.
    """
    from .exact import is_sisa
    from ..methods import base as registry
    from ..sequential import unlearn_sequence

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module; got {type(model).__name__}")
    dataset = dataset_of(data)
    if isinstance(requests, (str, bytes)) or not isinstance(requests, Sequence) or len(requests) == 0:
        raise ValueError("requests must be a non-empty list of request expressions, subsets or row lists")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size={group_size!r} is not allowed; expected an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer; got {seed!r}")
    if not isinstance(method, str) or method not in registry.registered():
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(sorted(registry.registered()))}")
    if method == "retrain":
        raise ValueError("retrain is the oracle every step is measured against; choose an unlearning method")
    if is_sisa(model) != (method == "sisa"):
        raise ValueError("a SISA ensemble is served exactly with method 'sisa'" if is_sisa(model) else
                         "method 'sisa' serves a SISA ensemble (expunge.exact.sisa); this model is not one")
    if is_sisa(model):
        oracles = False                               # exact: each step is its own oracle
    args = dict(args or {})
    registry.get(method)(**args)                      # checks the arguments' names, types and values
    parsed = [request_rows(data, r, k) for k, r in enumerate(requests)]
    owner: dict[int, int] = {}
    for k, (_, pos) in enumerate(parsed):
        for p in pos.tolist():
            if p in owner:
                where = "itself" if owner[p] == k else f"request {owner[p] + 1}"
                raise ValueError(f"request {k + 1} repeats row {p} of {where}; requests must be disjoint (a row is "
                                 "forgotten once)")
            owner[p] = k
    if len(owner) >= len(dataset):  # type: ignore[arg-type]
        raise ValueError("the requests together cover every row of the data; nothing would be left to retain")
    groups = [parsed[i:i + group_size] for i in range(0, len(parsed), group_size)]
    if not isinstance(oracles, bool):
        oracles = list(oracles)
        if len(oracles) != len(groups):
            raise ValueError(f"oracles must be True, False or a list of {len(groups)} models (one per step)")
    rows = [np.concatenate([pos for _, pos in g]) for g in groups]
    done = unlearn_sequence(model, dataset, rows, method=method, seed=seed, oracles=oracles,
                            evaluate_args={"test": test} if test is not None else None, **args)
    steps = [StreamStep(k + 1, [label for label, _ in g], int(s.request_size), int(s.forgotten), dict(s.scores),
                        provenance(s.model).seconds, s.model) for k, (g, s) in enumerate(zip(groups, done))]
    return StreamResult(steps[-1].model, steps, method, args, group_size, seed, not (oracles is False))


__all__ = ["stream", "read_batch", "request_rows", "dataset_of", "StreamResult", "StreamStep"]
