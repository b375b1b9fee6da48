"""Choosing the method for a deletion request (``expunge forget --method auto``), with a small stated budget.

:func:`choose_method` tunes the registered methods for the data's task against an oracle on a *tuning forget set*
of the same kind and size as the request, never on the request itself, and picks the one closest to that oracle:

- **The tuning forget set** (:func:`tuning_rows`): for a class request (``class:3``), as many other classes, the
  next ones in label order (:func:`expunge.tuning.tuning_set`); for a group request (``group:17``), as many other
  groups, each the untouched group closest in size to a requested one (ties broken by a seeded draw; numeric groups
  below 0 are never drawn); for rows (``ids:``, ``where:``, a list of positions), as many rows drawn at random from
  the rows the request leaves (:func:`expunge.tuning.tuning_set`, seed ``seed + 1000``).
- **The request's rows are never read.** The tuning retain set is the data without the tuning forget set *and*
  without the request's rows, so no model trained here (the tuning oracle, the candidates) and no score sees them:
  the oracle is the original retrained without both, and each candidate unlearns the tuning set from the original.
  For a class request, the requested class is also left out of the test accuracy (as the tuning class is), since
  the tuning oracle never saw it.
- **Candidates** (:func:`candidates`): every registered method for the data's task (classification or
  regression), except ``retrain`` (the oracle, and the fallback), methods that need a specially trained original
  (``sisa``), methods that need convolution layers on a model without any, and methods that read whole sets on
  streamed data; ``budget["methods"]`` narrows the list.
- **Budget**: ``trials`` Optuna trials per method (:func:`expunge.tuning.quick_tune`, default
  :data:`DEFAULT_TRIALS`; each method's first trial is its defaults where they lie in its grid), plus one oracle;
  the rough cost is estimated once the oracle is trained, before the trials, and recorded
  (:func:`expunge.tuning.estimate_seconds`).
- **Choice**: the lowest Avg. Gap to the tuning oracle (classification; the Wasserstein distance to its outputs for
  regression) among the candidates that pass the *guard*: retain and test accuracy no more than ``guard``
  percentage points below the oracle's (regression: retain and test MAE no more than ``guard`` percent above), and
  closer to the oracle than doing nothing (the original scored against the same oracle). When no candidate passes,
  the choice is ``retrain``: exact, at the cost of a full retraining.

The record (plain JSON values) says what was tried and scored, the budget, the tuning set (kind, size, a SHA-256 of
its row positions, and that it is disjoint from the request), the do-nothing and oracle scores, the choice and why,
and the seconds.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import groups_of, is_streamed, targets, task_of
from ..evaluate import evaluate

DEFAULT_TRIALS = 4          # Optuna trials per method unless the budget says otherwise
DEFAULT_GUARD = 2.0         # percentage points of retain/test accuracy a choice may lose against the oracle
TASKS = ("classification", "regression")
BUDGET_KEYS = ("methods", "trials", "guard")
FALLBACK = "retrain"


@dataclass(frozen=True)
class Budget:
    """What a choice may spend: the methods tried (None: every candidate), trials per method, the guard."""

    methods: tuple[str, ...] | None = None
    trials: int = DEFAULT_TRIALS
    guard: float = DEFAULT_GUARD

    def to_dict(self) -> dict[str, Any]:
        return {"methods": list(self.methods) if self.methods is not None else "all", "trials": self.trials,
                "guard": self.guard}


def check_budget(budget: dict[str, Any] | Budget | None) -> Budget:
    """``budget`` (a dict with keys ``methods``: ``"all"`` or a list of names, ``trials``, ``guard``) as a
    :class:`Budget`; ValueError/TypeError naming the bad key."""
    from ..tuning import check_trials

    if budget is None:
        return Budget()
    if isinstance(budget, Budget):
        budget = budget.to_dict()
    if not isinstance(budget, dict):
        raise TypeError(f"budget must be a dict with keys {', '.join(BUDGET_KEYS)}; got {type(budget).__name__}")
    unknown = sorted(set(budget) - set(BUDGET_KEYS))
    if unknown:
        raise ValueError(f"budget has unknown key {unknown[0]!r}; allowed: {', '.join(BUDGET_KEYS)}")
    methods = budget.get("methods", "all")
    if methods == "all" or methods is None:
        names = None
    elif isinstance(methods, (list, tuple)) and methods and all(isinstance(m, str) for m in methods):
        names = tuple(methods)
        if len(set(names)) != len(names):
            raise ValueError(f"budget methods name {next(m for m in names if names.count(m) > 1)!r} twice")
    else:
        raise ValueError(f"budget methods={methods!r} is not allowed; expected 'all' or a non-empty list of names")
    trials = check_trials(budget.get("trials", DEFAULT_TRIALS), "budget trials")
    guard = budget.get("guard", DEFAULT_GUARD)
    if isinstance(guard, bool) or not isinstance(guard, (int, float)) or not math.isfinite(guard) or guard < 0:
        raise ValueError(f"budget guard={guard!r} is not allowed; expected a number >= 0 (percentage points)")
    return Budget(names, trials, float(guard))


def candidates(original: nn.Module, data: Dataset) -> tuple[list[str], dict[str, str]]:
    """``(methods to tune, {method: why it is skipped})`` for ``original`` trained on ``data``: the registered
    methods of the data's task, in name order."""
    from ..methods import registered
    from ..methods._common import STREAMING_METHODS

    task = task_of(data)
    conv = any(isinstance(m, nn.Conv2d) for m in original.modules())
    streamed = is_streamed(data)
    keep, skipped = [], {}
    for name, cls in sorted(registered().items()):
        if task not in cls.tasks:
            continue
        if name == FALLBACK or not cls.forgets:      # the oracle itself; a do-nothing baseline
            continue
        if cls.needs_special_original:
            skipped[name] = "needs a specially trained original (a SISA ensemble)"
        elif cls.requires_conv and not conv:
            skipped[name] = "needs convolution layers; the model has none"
        elif streamed and name not in STREAMING_METHODS:
            skipped[name] = "reads whole sets; the data is streamed"
        else:
            keep.append(name)
    return keep, skipped


# --- the tuning forget set ---------------------------------------------------------------------------------------

def request_of(data: Dataset, request: Any) -> tuple[str, np.ndarray]:
    """``(kind, sorted row positions)`` of ``request``: a parsed request (``kind`` ids, group, class or where), a
    ``split_forget`` result (class-wise or rows) or a list of row positions (rows)."""
    kind = getattr(request, "kind", None)
    inner = getattr(request, "request", None)               # a Split made by split_forget
    if kind is None:
        kind = "class" if inner is not None and getattr(inner, "is_classwise", False) else "rows"
    rows = getattr(request, "indices", request)
    try:
        pos = np.unique(np.asarray(rows, dtype=np.int64).reshape(-1))
    except (TypeError, ValueError):
        raise TypeError("request must be a parsed request, a split_forget subset or a list of row positions; got "
                        f"{type(request).__name__}") from None
    n = len(data)  # type: ignore[arg-type]
    if pos.size == 0:
        raise ValueError("the request names no rows; nothing would be forgotten")
    if pos[0] < 0 or pos[-1] >= n:
        raise ValueError(f"the request names row {int(pos[0] if pos[0] < 0 else pos[-1])}, outside the {n} rows of "
                         "the data")
    if pos.size >= n:
        raise ValueError("the request names every row of the data; nothing would be left to retain")
    return str(kind), pos


def tuning_rows(data: Dataset, request: Any, *, seed: int = 0) -> tuple[np.ndarray, str, tuple[int, ...] | None]:
    """``(row positions, description, classes)`` of the tuning forget set for ``request`` (see the module
    docstring): the same kind and size, disjoint from the request. ``classes`` are the tuning classes for a class
    request, else None."""
    from ..data import split_forget
    from ..tuning import tuning_set

    kind, rows = request_of(data, request)
    if kind == "class":
        labels = targets(data).numpy()
        classes = sorted(set(labels[rows].tolist()))
        if not np.isin(np.flatnonzero(np.isin(labels, classes)), rows).all():
            raise ValueError(f"a class request must name every row of its class(es) {classes}")
        tset = tuning_set(data, split_forget(data, classes=classes)[0], seed=seed)
        chosen = np.asarray(tset.forget.indices, dtype=np.int64)
        return chosen, tset.description, tuple(tset.forget.request.classes)
    if kind == "group":
        return (*_similar_groups(data, rows, seed), None)
    tset = tuning_set(data, split_forget(data, indices=rows)[0], seed=seed)
    return np.asarray(tset.forget.indices, dtype=np.int64), tset.description, None


def _similar_groups(data: Dataset, rows: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """As many untouched groups as the request covers, each the one closest in size to a requested group."""
    from ..tuning import TUNING_SEED_OFFSET

    groups = groups_of(data)
    if groups is None:
        raise ValueError("a group request needs data with groups; this data has none")
    groups = np.asarray(groups)
    asked = np.unique(groups[rows])
    values, counts = np.unique(groups, return_counts=True)
    size = dict(zip(values.tolist(), counts.tolist()))
    free = values[~np.isin(values, asked)]
    if np.issubdtype(free.dtype, np.number):
        free = free[free >= 0]
    if len(free) <= len(asked):
        raise ValueError(f"choosing a method needs {len(asked)} other group(s) to tune on and one to keep; the data "
                         f"has {len(free)} outside the request")
    g = torch.Generator().manual_seed(int(seed) + TUNING_SEED_OFFSET)
    free_values = free.tolist()
    order = [free_values[i] for i in torch.randperm(len(free), generator=g).tolist()]   # seeded tie-break
    chosen: list[Any] = []
    for value in sorted(asked.tolist(), key=lambda v: (-size[v], str(v))):
        best = min((v for v in order if v not in chosen), key=lambda v: abs(size[v] - size[value]))
        chosen.append(best)
    picked = np.flatnonzero(np.isin(groups, np.asarray(chosen, dtype=groups.dtype)))
    sizes = ", ".join(f"{v!r} ({size[v]} rows)" for v in chosen)
    asked_sizes = ", ".join(f"{v!r} ({size[v]} rows)" for v in asked.tolist())
    return picked.astype(np.int64), f"group(s) {sizes}, the closest in size to the requested {asked_sizes}"


def _digest(rows: np.ndarray) -> str:
    return hashlib.sha256(np.sort(rows).astype("<i8").tobytes()).hexdigest()


# --- the choice --------------------------------------------------------------------------------------------------

def choose_method(original: nn.Module, data: Dataset, request: Any, *, budget: dict[str, Any] | None = None,
                  seed: int = 0, test: Dataset | None = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Choose the method and arguments for serving ``request`` on ``original`` (trained on ``data``); return
    ``(method, args, record)``. ``budget``: ``{"methods": "all" | [...], "trials": T, "guard": points}``;
    ``test``: held-out data for test accuracy and the membership attack (optional). See the module docstring.
    """
    from ..data import split_forget
    from ..methods import registered
    from ..tuning import TuningSet, TuningError, estimate_seconds, quick_tune, train_oracle

    start = time.perf_counter()
    dataset = data if isinstance(data, Dataset) else getattr(data, "dataset", data)
    if not isinstance(original, nn.Module):
        raise TypeError(f"original must be a torch nn.Module; got {type(original).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer; got {seed!r}")
    task = task_of(dataset)
    if task not in TASKS:
        raise ValueError(f"--method auto chooses among methods for {' and '.join(TASKS)} data; the data is {task}: "
                         "name a method")
    plan = check_budget(budget)
    usable, skipped = candidates(original, dataset)
    if plan.methods is not None:
        known = registered()
        for name in plan.methods:
            if name not in known:
                raise ValueError(f"budget names unknown method {name!r}; candidates here: {', '.join(usable)}")
            if name not in usable:
                why = skipped.get(name) or ("is the fallback, not a candidate" if name == FALLBACK else
                                            f"unlearns {' and '.join(known[name].tasks)} models")
                raise ValueError(f"budget names method {name!r}, which {why}; candidates here: {', '.join(usable)}")
        usable = list(plan.methods)
    kind, rows = request_of(dataset, request)
    tune_rows, described, tune_classes = tuning_rows(dataset, request, seed=seed)
    if np.isin(tune_rows, rows).any():           # the tuning set is drawn from what the request leaves
        raise RuntimeError("the tuning forget set overlaps the request; this is a bug in expunge")
    forget = (split_forget(dataset, classes=list(tune_classes))[0] if tune_classes is not None
              else split_forget(dataset, indices=tune_rows)[0])
    retain = split_forget(dataset, indices=np.concatenate([tune_rows, rows]))[1]
    scoring: dict[str, Any] = {}
    if kind == "class":
        asked = sorted(set(targets(dataset).numpy()[rows].tolist()))
        scoring["forgotten_classes"] = list(tune_classes or ()) + asked
    tset = TuningSet(forget, retain, None, described)
    train_oracle(original, tset, test=test, seed=seed, scoring=scoring)
    estimate = estimate_seconds(usable, tset, plan.trials)
    oracle_scores = evaluate(tset.oracle, forget=forget, retain=retain, test=test, seed=seed, **scoring)
    nothing = evaluate(original, forget=forget, retain=retain, test=test, reference=tset.oracle, seed=seed, **scoring)
    objective = "w1_to_reference" if task == "regression" else "avg_gap"
    tried: list[dict[str, Any]] = []
    for name in usable:
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"method": name}
        try:
            result = quick_tune(name, original, tset, test=test, trials=plan.trials, seed=seed, scoring=scoring)
        except TuningError as e:
            entry.update(args=None, objective=None, scores=None, trials=None, passed=False, reason=str(e),
                         seconds=time.perf_counter() - t0)
            tried.append(entry)
            continue
        best = next(t for t in result.trials if t["error"] is None and t["args"] == result.best_args)
        reason = _guard(best["scores"], oracle_scores, nothing, task, plan.guard, objective)
        entry.update(args=_plain(result.best_args), objective=float(result.best_value),
                     scores=_headline(best["scores"]), trials=len(result.trials),
                     failed_trials=sum(t["error"] is not None for t in result.trials),
                     passed=reason is None, reason=reason or "passes the guard",
                     seconds=time.perf_counter() - t0)
        tried.append(entry)
    passing = [e for e in tried if e["passed"]]
    if passing:
        pick = min(passing, key=lambda e: (e["objective"], usable.index(e["method"])))
        method, args = pick["method"], dict(pick["args"])
        why = (f"{method} came closest to the tuning oracle ({objective} {pick['objective']:.3f}; doing nothing: "
               f"{nothing[objective]:.3f}) among the {len(passing)} of {len(tried)} methods that pass the guard")
    else:
        method, args = FALLBACK, {}
        why = (f"no method passed the guard (within {plan.guard:g} of the oracle's retain/test scores and closer to it "
               "than doing nothing); serving the request by retraining without its rows (exact)")
    record = {
        "chosen": method,
        "args": _plain(args),
        "reason": why,
        "objective": objective,
        "budget": {**plan.to_dict(), "methods_tried": list(usable)},
        "tuning_set": {"request_kind": kind, "request_rows": int(rows.size), "rows": int(tune_rows.size),
                       "description": described, "rows_sha256": _digest(tune_rows),
                       "disjoint_from_request": True, "request_rows_read": False,
                       "retain_rows": len(retain), "forgotten_classes_in_scores": scoring.get("forgotten_classes")},
        "oracle": {"seconds": tset.oracle_seconds, "scores": _headline(oracle_scores)},
        "do_nothing": {"scores": _headline(nothing), "objective": float(nothing[objective])},
        "tried": tried,
        "skipped": skipped,
        "estimated_seconds": estimate,
        "seed": seed,
        "seconds": time.perf_counter() - start,
    }
    return method, args, record


def _guard(scores: dict[str, float], oracle: dict[str, float], nothing: dict[str, float], task: str, guard: float,
           objective: str) -> str | None:
    """None when ``scores`` pass the guard, else one line saying which score failed."""
    if task == "classification":
        for key in ("retain_acc", "test_acc"):
            if key in scores and key in oracle and scores[key] < oracle[key] - guard:
                return (f"{key.replace('_', ' ')} {scores[key]:.2f}% is more than {guard:g} points below the "
                        f"oracle's {oracle[key]:.2f}%")
    else:
        for key in ("retain_mae", "test_mae"):
            if key in scores and key in oracle and scores[key] > oracle[key] * (1 + guard / 100):
                return (f"{key.replace('_', ' ')} {scores[key]:.4g} is more than {guard:g}% above the oracle's "
                        f"{oracle[key]:.4g}")
    if not scores[objective] < nothing[objective]:
        return (f"{objective} {scores[objective]:.3f} is no closer to the oracle than doing nothing "
                f"({nothing[objective]:.3f})")
    return None


HEADLINE = ("forget_acc", "retain_acc", "test_acc", "ua", "mia_efficacy", "forget_mae", "retain_mae", "test_mae",
            "gap_ua", "gap_retain_acc", "gap_test_acc", "gap_mia_efficacy", "gap_forget_mae", "gap_retain_mae",
            "gap_test_mae", "avg_gap", "w1_to_reference")


def _headline(scores: dict[str, float]) -> dict[str, float]:
    return {k: float(scores[k]) for k in HEADLINE if k in scores}


def _plain(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments as JSON values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}


__all__ = ["choose_method", "candidates", "tuning_rows", "request_of", "check_budget", "Budget", "DEFAULT_TRIALS",
           "DEFAULT_GUARD"]
