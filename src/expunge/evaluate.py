"""``evaluate``: the score dict of an (unlearned) model, and its gaps to a reference (the oracle).

Classification (percent): ``forget_acc``, ``retain_acc``, ``test_acc``, ``ua`` = 100 − forget_acc,
``mia_efficacy`` (see ``metrics.mia``). For class-wise forgetting ``test_acc`` covers the remaining classes and
``test_forget_acc`` the forgotten ones. With a reference: ``gap_ua``, ``gap_retain_acc``, ``gap_test_acc``,
``gap_mia_efficacy`` (absolute differences) and ``avg_gap``, their mean (the Avg. Gap of the SalUn and Sparsity
papers).

Regression: ``forget_mae``, ``retain_mae``, ``test_mae``, ``mia_efficacy`` (loss-based), with a reference
``w1_to_reference`` (Wasserstein-1 between the two models' forget-set predictions) and the ``gap_*`` of each.

Both: ``seconds`` (the model's recorded wall time) and, with a reference, ``rte`` = seconds as % of the
reference's; ``evidence_tier`` = 0 (accuracies and a population attack: this cannot show that the model is
indistinguishable from the oracle).
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn
from torch.utils.data import Dataset

from .data.datasets import resolve, targets
from .metrics import per_example_loss, predict, svc_mia_efficacy, true_class_confidence
from .provenance import provenance
from .training import regression_output

CLASSIFICATION_GAPS = ("ua", "retain_acc", "test_acc", "mia_efficacy")
REGRESSION_GAPS = ("forget_mae", "retain_mae", "test_mae", "mia_efficacy")
TIER0_CAVEAT = ("Evidence tier 0 (accuracies and a population MIA): these numbers cannot show that the model is "
                "indistinguishable from retraining; the target of every metric is the oracle's value.")


def evaluate(model: nn.Module, *, forget: Dataset, retain: Dataset, test: Dataset | None = None,
             reference: nn.Module | None = None, forgotten_classes: Iterable[int] | None = None,
             seed: int = 0) -> dict[str, float]:
    """Score ``model`` on the forget, retain and test sets; with ``reference`` (the oracle), also the gaps.

    ``forgotten_classes`` defaults to the classes of a class-wise forget request made by ``split_forget``.
    Returns a flat dict of floats.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module; got {type(model).__name__}")
    task = resolve(forget)[0].task
    classes = _forgotten_classes(forget, forgotten_classes)
    scores = _scores(model, forget, retain, test, task, classes, seed)
    if reference is not None:
        ref = _scores(reference, forget, retain, test, task, classes, seed)
        names = CLASSIFICATION_GAPS if task == "classification" else REGRESSION_GAPS
        gaps = {f"gap_{k}": abs(scores[k] - ref[k]) for k in names if k in scores and k in ref}
        scores.update(gaps)
        if task == "classification" and gaps:
            scores["avg_gap"] = sum(gaps.values()) / len(gaps)
        if task == "regression":
            scores["w1_to_reference"] = _w1(predict(model, forget), predict(reference, forget), targets(forget))
    seconds = provenance(model).seconds
    if seconds is not None:
        scores["seconds"] = float(seconds)
        ref_seconds = provenance(reference).seconds if reference is not None else None
        if ref_seconds:
            scores["rte"] = 100.0 * seconds / ref_seconds
    scores["evidence_tier"] = 0.0
    return scores


def _forgotten_classes(forget: Dataset, given: Iterable[int] | None) -> tuple[int, ...] | None:
    if given is not None:
        return tuple(int(c) for c in given)
    request = getattr(forget, "request", None)
    return request.classes if request is not None and request.is_classwise else None


def _scores(model, forget, retain, test, task, classes, seed) -> dict[str, float]:
    out: dict[str, float] = {}
    fo, ro = predict(model, forget), predict(model, retain)
    fy, ry = targets(forget), targets(retain)
    to = predict(model, test) if test is not None else None
    ty = targets(test) if test is not None else None
    if task == "classification":
        out["forget_acc"] = _accuracy(fo, fy)
        out["retain_acc"] = _accuracy(ro, ry)
        out["ua"] = 100.0 - out["forget_acc"]
        if to is not None:
            keep = torch.ones(len(ty), dtype=torch.bool)
            if classes:
                keep = ~torch.isin(ty, torch.tensor(classes))
                out["test_forget_acc"] = _accuracy(to[~keep], ty[~keep])
            out["test_acc"] = _accuracy(to[keep], ty[keep])
            out["mia_efficacy"] = svc_mia_efficacy(true_class_confidence(fo, fy), true_class_confidence(ro, ry),
                                                   true_class_confidence(to[keep], ty[keep]), seed=seed)
    else:
        out["forget_mae"] = _mae(fo, fy)
        out["retain_mae"] = _mae(ro, ry)
        if to is not None:
            out["test_mae"] = _mae(to, ty)
            out["mia_efficacy"] = svc_mia_efficacy(per_example_loss(fo, fy, task), per_example_loss(ro, ry, task),
                                                   per_example_loss(to, ty, task), seed=seed)
    return out


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    if len(y) == 0:
        return float("nan")
    return float(100.0 * (logits.argmax(-1) == y).float().mean())


def _mae(outputs: torch.Tensor, y: torch.Tensor) -> float:
    if len(y) == 0:
        return float("nan")
    return float((regression_output(outputs, y) - y).abs().mean())


def _w1(a: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> float:
    from scipy.stats import wasserstein_distance

    a, b = regression_output(a, y).flatten(), regression_output(b, y).flatten()
    return float(wasserstein_distance(a.numpy(), b.numpy()))


def is_finite_scores(scores: dict[str, Any]) -> bool:
    return all(not isinstance(v, float) or not math.isnan(v) for v in scores.values())
