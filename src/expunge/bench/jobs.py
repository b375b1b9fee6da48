"""What a worker does with one job: a plain function of a payload, returning a plain result.

Workers never touch the run store or the model cache: the driver puts the models a job needs into its payload
and records what comes back (scores as ``metrics``, structured output as ``result``, a trained ``model`` to
cache). A job that fails returns ``error`` instead of raising, so one bad job never stops the others, and says
whether the failure is ``permanent`` (see :func:`is_permanent`): a job is a seeded, deterministic function of its
payload, so a diverging run (``DivergenceError``), input refused with ValueError or TypeError (a class that does not
exist, bad method arguments, a method that needs convolutional layers given an MLP), a tuning study whose every
trial failed, or any other error of the computation itself would fail the same way on every run: it is recorded as
failed and not run again unless asked. What comes from the machine rather than the job (an OSError such as a full
disk or a lost file, running out of memory, a lost worker) is transient: reported, not recorded, retried on the
next run.

Jobs that share a process run one at a time: torch's global random state is per process, and a worker with
several threads would otherwise interleave seeded runs.
"""
from __future__ import annotations

import functools
import json
import random
import threading
import time
import traceback
from typing import Any, Callable

import numpy as np
import torch

from .. import api
from ..data import split_forget
from ..devices import use
from ..evaluate import evaluate
from ..experiment import load_data as _load_data
from ..experiment import build_template, check_tokenizer, make_split, scoring_sets
from ..metrics import predict
from ..threads import get_threads
from ..training import DivergenceError

_LOCK = threading.Lock()


class FinalError(Exception):
    """A job outcome that would repeat on every run (recorded as failed, not retried)."""


TRANSIENT = (OSError, MemoryError, EOFError)   # the machine, not the job (OSError covers timeouts, lost connections)


def is_permanent(error: BaseException) -> bool:
    """Whether running the same job again would fail the same way: everything except what comes from the machine
    (:data:`TRANSIENT`, and torch's out-of-memory errors)."""
    if isinstance(error, TRANSIENT):
        return False
    oom = getattr(torch, "OutOfMemoryError", None)
    if (oom is not None and isinstance(error, oom)) or "out of memory" in str(error).lower():
        return False
    return True


def load_data(spec: dict[str, Any], seed: int):
    """``(train, test)`` for a data spec, cached per process (the same data serves many jobs)."""
    return _cached_data(json.dumps(spec, sort_keys=True), seed)


@functools.lru_cache(maxsize=4)
def _cached_data(spec_json: str, seed: int):
    return _load_data(json.loads(spec_json), seed)


def run_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one job of kind ``payload["kind"]``; never raises for a failing job (see the module docstring)."""
    torch.set_num_threads(get_threads())          # 1 unless --threads / EXPUNGE_THREADS asks for more
    with _LOCK:
        seed = int(payload.get("seed", 0))
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        start = time.perf_counter()
        try:
            out = _on_device(payload)
        except DivergenceError as e:
            out = {"error": f"diverged: {e}", "permanent": True}
        except FinalError as e:
            out = {"error": str(e), "permanent": True}
        except Exception as e:  # noqa: BLE001 - reported to the driver, which records or retries
            out = {"error": f"{type(e).__name__}: {e}", "permanent": is_permanent(e)}
            if not isinstance(e, (ValueError, TypeError)):   # a refusal says all; anything else may be a bug
                out["traceback"] = traceback.format_exc()
        out["job_seconds"] = time.perf_counter() - start
    return out


def _on_device(payload: dict[str, Any]) -> dict[str, Any]:
    """Run the job on its setup's device (``device`` in the payload; the CPU when absent): the payload's models
    are moved there, and a model the job returns comes back on the CPU (for the model cache and the engines)."""
    spec = payload.get("device", "cpu")
    if spec == "cpu":
        return RUNNERS[payload["kind"]](payload)
    with use(spec) as device:
        for key in ("original", "oracle"):
            if isinstance(payload.get(key), torch.nn.Module):
                payload[key] = payload[key].to(device)
        out = RUNNERS[payload["kind"]](payload)
    if isinstance(out.get("model"), torch.nn.Module):
        out["model"] = out["model"].cpu()
    return out


def tagged_job(tag: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``run_job`` returning its tag with the result (for engines that yield results in completion order)."""
    return tag, run_job(payload)


def _scoring(p: dict[str, Any], train) -> dict[str, Any]:
    """Extra ``evaluate`` arguments of a job: the language task's world-facts set and the bench's ``scoring``
    (without ``evidence``: IAM is added by :func:`_with_iam`, and tuning trials go without it)."""
    return {k: v for k, v in {**scoring_sets(train), **(p.get("scoring") or {})}.items() if k != "evidence"}


def _with_iam(p: dict[str, Any], scored: list[tuple[dict[str, float], torch.nn.Module]], forget, retain, test
              ) -> dict[str, float]:
    """With the bench's ``scoring: {evidence: iam}``: IAM of each (scores, model) pair added to its scores, every
    model against one shadow trained from the cell's original (the same shadow, seed for seed, in every job of
    the cell: each job trains it anew); returns the job's metric ``iam_shadow_seconds`` (its training time), or
    nothing without IAM."""
    if (p.get("scoring") or {}).get("evidence") != "iam":
        return {}
    from ..audit.iam import iam, train_shadow

    shadow = train_shadow(p["original"], forget=forget, retain=retain, seed=p["seed"])
    for scores, model in scored:
        scores.update(iam(model, forget=forget, retain=retain, test=test, shadow=shadow).summary())
    return {"iam_shadow_seconds": shadow.seconds}


def _splits(p: dict[str, Any]):
    train, test = load_data(p["data"], p["data_seed"])
    forget_spec = p["forget"]
    if "worst_case" in forget_spec:
        forget, retain = split_forget(train, indices=np.asarray(p["indices"], dtype=np.int64))
    else:
        forget, retain = make_split(train, forget_spec, int(forget_spec.get("seed", p["seed"])))
    return train, test, forget, retain


def _accuracy(model: torch.nn.Module, data) -> float:
    from ..data.datasets import targets

    y = targets(data)
    if y.is_floating_point():
        return float("nan")
    return float(100.0 * (predict(model, data).argmax(-1) == y).float().mean())


def _original(p: dict[str, Any]) -> dict[str, Any]:
    train, test = load_data(p["data"], p["data_seed"])
    template = build_template(p["model"], train, seed=p["seed"])
    check_tokenizer(template, train)
    original = api.train(template, train, seed=p["seed"], **p["recipe"])
    from ..provenance import provenance

    seconds = float(provenance(original).seconds or 0.0)
    extra = {}
    if p.get("sparse"):   # prune first, then unlearn: every later job of the setup sees the sparse original
        from ..sparsity import measured_sparsity, sparsify

        original = sparsify(original, train, **p["sparse"])
        seconds += float(provenance(original).seconds or 0.0)
        extra["sparsity"] = measured_sparsity(original)
    if train.task in ("language", "generation"):      # scored against each oracle in the oracle jobs
        metrics = {"seconds": seconds, **extra}
    else:
        metrics = {"train_acc": _accuracy(original, train), "test_acc": _accuracy(original, test),
                   "seconds": seconds, **extra}
    return {"model": original, "metrics": metrics}


def _select(p: dict[str, Any]) -> dict[str, Any]:
    from ..worst_case import select_worst_case

    train, _ = load_data(p["data"], p["data_seed"])
    opts = {k: p[k] for k in ("fraction", "size", "select_epochs", "unlearn_steps", "lr_w", "gamma") if k in p}
    idx = select_worst_case(p["original"], train, method=p["method"], method_args=p.get("args") or None,
                            seed=p["seed"], **opts)
    idx = np.asarray(idx, dtype=np.int64)
    return {"result": {"indices": idx.tolist()}, "metrics": {"size": float(len(idx))}}


def _oracle(p: dict[str, Any]) -> dict[str, Any]:
    train, test, forget, retain = _splits(p)
    seed, scoring = p["seed"], _scoring(p, train)
    oracle = api.unlearn(p["original"], forget=forget, retain=retain, method="retrain", seed=seed)
    scores = evaluate(oracle, forget=forget, retain=retain, test=test, seed=seed, **scoring)
    original = evaluate(p["original"], forget=forget, retain=retain, test=test, reference=oracle, seed=seed, **scoring)
    original.pop("rte", None)   # the original's training time is not an unlearning cost
    shadow = _with_iam(p, [(scores, oracle), (original, p["original"])], forget, retain, test)
    metrics = {**scores, **{f"original_{k}": v for k, v in original.items()}, **shadow,
               "forget_size": float(len(forget)), "retain_size": float(len(retain))}
    return {"model": oracle, "metrics": metrics}


def _tune(p: dict[str, Any]) -> dict[str, Any]:
    from ..tuning import TuningError, tune

    train, test, forget, retain = _splits(p)
    try:
        res = tune(p["method"], p["original"], forget=forget, retain=retain, test=test, oracle=p["oracle"],
                   trials=p["trials"], seed=p["seed"], space=p.get("space"), fixed=p.get("fixed") or None,
                   objective=p.get("objective", "avg_gap"), scoring=_scoring(p, train))
    except TuningError as e:   # every trial failed: deterministic under the seed
        raise FinalError(f"tuning failed: {e}") from None
    trials = [_plain(t) for t in getattr(res, "trials", [])]
    result = {"best_args": _plain(dict(res.best_args)), "best_value": float(res.best_value), "trials": trials}
    return {"result": result, "metrics": {"best_value": float(res.best_value), "trials": float(len(trials))}}


def _unlearn(p: dict[str, Any]) -> dict[str, Any]:
    train, test, forget, retain = _splits(p)
    seed, args = p["seed"], dict(p["args"])
    model = api.unlearn(p["original"], forget=forget, retain=retain, method=p["method"],
                        seed=p.get("unlearn_seed", seed), **args)
    scores = evaluate(model, forget=forget, retain=retain, test=test, reference=p["oracle"], seed=seed,
                      **_scoring(p, train))
    shadow = _with_iam(p, [(scores, model)], forget, retain, test)
    return {"metrics": {**scores, **shadow}, "result": {"args": _plain(args)}, "model": model}   # cached


def _plain(value: Any) -> Any:
    """JSON-able copy (numpy scalars to Python numbers, tuples to lists)."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


RUNNERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "original": _original, "select": _select, "oracle": _oracle, "tune": _tune, "unlearn": _unlearn}
