"""``evaluate``: the score dict of an (unlearned) model, and its gaps to a reference (the oracle).

Classification (percent): ``forget_acc``, ``retain_acc``, ``test_acc``, ``ua`` = 100 − forget_acc,
``mia_efficacy`` (see ``metrics.mia``: the mean over repeated member draws, with ``mia_efficacy_std`` across draws
and ``mia_unstable`` = 1 when the attack's decision is a coin flip). For class-wise forgetting ``test_acc`` covers
the remaining classes and ``test_forget_acc`` the forgotten ones. With a reference: ``gap_ua``, ``gap_retain_acc``,
``gap_test_acc``, ``gap_mia_efficacy`` (absolute differences) and ``avg_gap``, their mean (the Avg. Gap of the SalUn and Sparsity
papers; without ``test`` only ``gap_ua`` and ``gap_retain_acc`` exist and ``avg_gap`` is their mean, which is not
comparable with the papers' four-metric Avg. Gap). When the MIA of the model or of the reference is unstable,
``avg_gap`` is the mean of the other gaps and ``avg_gap_without_mia`` = 1 says so (reports mark such a value).
For the degenerate-model check of :mod:`expunge.verdict`: ``majority_acc`` (the accuracy of always predicting the
most common test label) and ``top_class_share`` (% of test predictions that are the most predicted class), both on
the test examples ``test_acc`` covers (on retain without ``test``).

Regression: ``forget_mae``, ``retain_mae``, ``test_mae``, ``mia_efficacy`` (loss-based), with a reference
``w1_to_reference`` (Wasserstein-1 between the two models' forget-set predictions) and the ``gap_*`` of each.

Language models (text data): :func:`expunge.lm.evaluate.evaluate_language` (TOFU and MUSE scores, text membership
attacks, gaps to the oracle; its module docstring defines every key).

Image generators (generation data): :func:`expunge.gen.evaluate.evaluate_generation` (unlearning accuracy and
per-class generation accuracy read by a classifier trained on the real images, Fréchet distances on its features,
membership and embedding-space attacks, gaps to the oracle; its module docstring defines every key).

Both: ``seconds`` (the model's recorded wall time) and, with a reference, ``rte`` = seconds as % of the
reference's; ``evidence_tier`` = 0 (accuracies and a population attack: this cannot show that the model is
indistinguishable from the oracle).

Stronger evidence (classification):

- ``oracles=`` an :class:`expunge.ensemble.Ensemble` of oracles (e.g. ``expunge.ensemble.unlearn(original,
  method="retrain", seeds=range(16), ...)``): offline LiRA with the oracles as reference models attacks the
  model's forget examples against the test examples (both never seen by any oracle; see
  :mod:`expunge.audit.tier1`): ``lira_auc``, ``lira_tpr_at_1pct``, ``lira_tpr_at_0_1pct``, ``n_reference`` and the
  same attack's mean over ``lira_n_heldout`` held-out oracles (leave one out), ``lira_oracle_auc``,
  ``lira_oracle_tpr_at_1pct``, ``lira_oracle_tpr_at_0_1pct`` (the target values; an AUC of 0.5 is not the target).
  AUCs and TPRs are fractions in [0, 1], as the attack literature reports them, not percent. From
  ``TIER1_REFERENCES`` (16) oracles on, ``evidence_tier`` = 1.
- ``evidence=`` an :class:`expunge.audit.AuditResult` of the method on this forget request: its tier-1 and tier-2
  numbers (``AuditResult.evidence()``; scores, AUCs and TPRs as fractions, accuracies in percent) are merged in and
  ``evidence_tier`` becomes the higher of the two tiers.
  The audit's tier-2 numbers describe the method's output distribution; its ``lira_*`` numbers describe the
  audit's own audited model and give way to this model's when ``oracles`` is also given.
- ``evidence="iam"``: IAM (:mod:`expunge.audit.iam`; USENIX Security 2025), per-example unlearning completeness of
  this model's forget examples against one shadow model trained on half of ``retain`` with the model's recorded
  recipe (one training on half the retain set): ``iam_completeness_mean``, ``iam_incomplete_share``,
  ``iam_n_measured``, ``iam_n_forget`` and, with ``test``, ``iam_test_completeness_mean``,
  ``iam_test_incomplete_share`` and ``iam_relative_completeness``. A cheap per-example check of the tier-1 kind, not of tier-1 strength (one shadow
  model gives no calibrated false-positive rate): ``evidence_tier`` is not raised.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import OrderedDict
from typing import Any, Iterable

import torch
from torch import nn
from torch.utils.data import Dataset

from .data.datasets import fingerprint, resolve, targets
from .devices import model_device, resolve_device
from .gen.base import is_generative
from .metrics import logit_scaled_confidence, per_example_loss, predict
from .metrics.mia import svc_mia
from .provenance import provenance
from .threads import scoped
from .training import regression_output

log = logging.getLogger(__name__)

CLASSIFICATION_GAPS = ("ua", "retain_acc", "test_acc", "mia_efficacy")
REGRESSION_GAPS = ("forget_mae", "retain_mae", "test_mae", "mia_efficacy")
TIER0_CAVEAT = ("Evidence tier 0 (population scores and a population attack): these numbers cannot show that the "
                "model is indistinguishable from retraining; the target of every metric is the oracle's value.")
TIER_STATEMENTS = {
    0: TIER0_CAVEAT,
    1: ("Evidence tier 1 (per-example LiRA with oracles as reference models): tests whether this one model's forget "
        "examples look like examples no oracle trained on; its target is a held-out oracle's value. It does not "
        "test the method's output distribution, which tier 2 does."),
    2: ("Evidence tier 2 (many unlearned models against as many oracles, per forget example): the challenge "
        "score, KLoM and U-LiRA compare the method's output distribution with retraining's; each is read against "
        "its oracle-vs-oracle baseline, not against an ideal value."),
}


def tier_statement(tier: float | int) -> str:
    """What evidence of ``tier`` can and cannot show (the tier-0 statement for anything below 1)."""
    t = 0 if tier is None or math.isnan(float(tier)) else int(tier)
    return TIER_STATEMENTS[max(0, min(2, t))]


@scoped            # expunge's thread count; the caller's restored
def evaluate(model: nn.Module, *, forget: Dataset, retain: Dataset, test: Dataset | None = None,
             reference: nn.Module | None = None, forgotten_classes: Iterable[int] | None = None,
             seed: int = 0, oracles: nn.Module | None = None, evidence: Any = None,
             device: Any = None, world: Dataset | None = None, documents: Dataset | None = None,
             max_examples: int | None = None, samples_per_class: int | None = None,
             attack: bool | None = None) -> dict[str, float]:
    """Score ``model`` on the forget, retain and test sets; with ``reference`` (the oracle), also the gaps.

    ``forgotten_classes`` defaults to the classes of a class-wise forget request made by ``split_forget``.
    ``oracles`` (an ensemble of oracles) adds the tier-1 LiRA numbers; ``evidence`` (an ``AuditResult``) merges an
    audit's numbers and tier, ``evidence="iam"`` adds IAM's per-example completeness from one shadow model (see the
    module docstring). Returns a flat dict of floats.
    ``device``: where the models run (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; default: each where it
    is); a model elsewhere is copied there, the caller's models are not moved.

    Language models (text data): the TOFU and MUSE scores of :func:`expunge.lm.evaluate.evaluate_language`, with
    ``test`` the holdout set (membership attacks, PrivLeak), ``world`` the world-facts utility set, ``documents``
    forget-set documents (VerbMem), ``max_examples`` a cap on the rows scored per set, and ``oracles`` a list of
    K >= 2 oracle language models (per-fact tier-1 scores).

    Image generators (generation data): the scores of :func:`expunge.gen.evaluate.evaluate_generation`, drawing
    ``samples_per_class`` images per class (default 50); ``attack`` (default True) runs the embedding-space attack
    (``attack_success``), ``False`` skips it; call it directly for its other settings (the judge, the attacks).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module; got {type(model).__name__}")
    if device is not None:
        target = resolve_device(device)
        model = _on(model, target)
        reference = _on(reference, target) if isinstance(reference, nn.Module) else reference
        oracles = _on(oracles, target) if isinstance(oracles, nn.Module) else oracles
    task = resolve(forget)[0].task
    if is_generative(model) and task != "generation":
        raise ValueError(f"an image generator is scored on generation data (expunge.data.for_generation); the data "
                         f"is {task} data")
    if task == "language":
        from .lm.evaluate import evaluate_language

        if forgotten_classes is not None or evidence is not None:
            raise ValueError("forgotten_classes= and evidence= apply to classifiers; the data is text")
        if samples_per_class is not None or attack is not None:
            raise ValueError("samples_per_class= and attack= apply to image generators; the data is text")
        return evaluate_language(model, forget=forget, retain=retain, test=test, world=world, reference=reference,
                                 documents=documents, oracles=oracles, max_examples=max_examples, seed=seed)
    if task == "generation":
        from .gen.evaluate import evaluate_generation

        extra = [name for name, v in (("oracles", oracles), ("evidence", evidence), ("world", world),
                                      ("documents", documents), ("max_examples", max_examples)) if v is not None]
        if extra:
            raise ValueError(f"{'=, '.join(extra)}= do not apply to image generators; the data is generation data")
        if attack is not None and not isinstance(attack, bool):
            raise TypeError(f"attack must be True or False; got {type(attack).__name__}")
        more = {} if samples_per_class is None else {"samples_per_class": samples_per_class}
        more |= {} if attack is None else {"attack": attack}
        return evaluate_generation(model, forget=forget, retain=retain, test=test, reference=reference,
                                   forgotten_classes=forgotten_classes, seed=seed, **more)
    if samples_per_class is not None or attack is not None:
        name = "samples_per_class" if samples_per_class is not None else "attack"
        raise ValueError(f"{name}= applies to image generators; the data is {task} data")
    if world is not None or documents is not None or max_examples is not None:
        raise ValueError("world=, documents= and max_examples= apply to the language task; the data is "
                         f"{task} data")
    if isinstance(evidence, str):
        if evidence != "iam":
            raise ValueError(f"evidence must be an expunge.audit.AuditResult or 'iam'; got {evidence!r}")
        if task != "classification":
            raise ValueError(f"evidence='iam' scores classifiers; the data is {task} data")
        from .audit.iam import check_iam

        check_iam(model, forget=forget, retain=retain)
    classes = _forgotten_classes(forget, forgotten_classes)
    scores = _scores(model, forget, retain, test, task, classes, seed)
    if reference is not None:
        ref = _reference_scores(reference, forget, retain, test, task, classes, seed)
        names = CLASSIFICATION_GAPS if task == "classification" else REGRESSION_GAPS
        gaps = {f"gap_{k}": abs(scores[k] - ref[k]) for k in names if k in scores and k in ref}
        scores.update(gaps)
        if task == "classification" and gaps:
            if scores.get("mia_unstable") or ref.get("mia_unstable"):
                gaps.pop("gap_mia_efficacy", None)
                scores["avg_gap_without_mia"] = 1.0
            scores["avg_gap"] = sum(gaps.values()) / len(gaps)
        if task == "regression":
            scores["w1_to_reference"] = _w1(predict(model, forget), predict(reference, forget), targets(forget))
    scores.update(time_scores(model, reference))
    scores["evidence_tier"] = 0.0
    if isinstance(evidence, str):
        from .audit.iam import iam

        scores.update(iam(model, forget=forget, retain=retain, test=test, seed=seed).summary())
    elif evidence is not None:
        scores.update(_audit_evidence(evidence, forget, scores))
    if oracles is not None:
        tier1 = _tier1(model, oracles, forget, test, task)
        tier1["evidence_tier"] = max(scores["evidence_tier"], tier1["evidence_tier"])
        scores.update(tier1)
    return scores


def time_scores(model: nn.Module, reference: nn.Module | None) -> dict[str, float]:
    """``seconds`` (the model's recorded wall time) and ``rte`` (as % of the reference's), where recorded."""
    out: dict[str, float] = {}
    seconds = provenance(model).seconds
    if seconds is not None:
        out["seconds"] = float(seconds)
        ref_seconds = provenance(reference).seconds if reference is not None else None
        if ref_seconds:
            out["rte"] = 100.0 * seconds / ref_seconds
    return out


REFERENCE_CACHE_SIZE = 4     # reference (oracle) score dicts remembered, most recent first


def content_key(settings: str, model: nn.Module, datasets: Iterable[Dataset | None]) -> str:
    """A SHA-256 over ``settings``, ``model``'s weights and buffers (names and bytes), what rebuilds it when it
    knows (``config()``: an image generator's sampling settings live there, not in its weights) and the datasets'
    content fingerprints: the key of a reference's cached scores."""
    digest = hashlib.sha256(settings.encode())
    config = getattr(model, "config", None)
    if callable(config):
        try:
            digest.update(json.dumps(config(), sort_keys=True, default=str).encode())
        except NotImplementedError:      # a generator that cannot say what rebuilds it: its weights decide
            pass
    for name, t in model.state_dict().items():
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    for data in datasets:
        digest.update(b"-" if data is None else fingerprint(data).encode())
    return digest.hexdigest()
_reference_cache: "OrderedDict[str, dict[str, float]]" = OrderedDict()


def _reference_scores(reference: nn.Module, forget: Dataset, retain: Dataset, test: Dataset | None, task: str,
                      classes: Any, seed: int) -> dict[str, float]:
    """The reference's own scores, computed once per (reference weights, data, classes, seed): tuning scores many
    models against one oracle, and the oracle's SVC MIA (5 fits) would otherwise be refitted at every call. The key
    hashes the reference's weights and buffers and the data's content, so a changed model or dataset is scored
    again; the values are those ``_scores`` gives (it is deterministic)."""
    key = content_key(repr((task, classes, int(seed))), reference, (forget, retain, test))
    if key in _reference_cache:
        _reference_cache.move_to_end(key)
        return dict(_reference_cache[key])
    ref = _scores(reference, forget, retain, test, task, classes, seed)
    _reference_cache[key] = dict(ref)
    while len(_reference_cache) > REFERENCE_CACHE_SIZE:
        _reference_cache.popitem(last=False)
    return ref


def _on(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` if it is on ``device``, else a copy there (provenance and all)."""
    import copy

    return model if model_device(model) == device else copy.deepcopy(model).to(device)


def _tier1(model: nn.Module, oracles: nn.Module, forget: Dataset, test: Dataset | None, task: str) -> dict[str, float]:
    import numpy as np

    from .audit.result import TIER1_REFERENCES
    from .audit.tier1 import reference_attack
    from .ensemble import Ensemble
    from .metrics import logit_scaled_confidence

    if not isinstance(oracles, Ensemble):
        raise TypeError(f"oracles must be an expunge.ensemble.Ensemble of oracle models (e.g. from expunge.ensemble."
                        f"unlearn(original, method='retrain', seeds=...)); got {type(oracles).__name__}")
    if task != "classification":
        raise ValueError("oracles= adds a LiRA attack on classifiers; the data is a regression task")
    if test is None:
        raise ValueError("oracles= needs test= (the test examples are the attack's non-members)")
    if len(oracles) < 2:
        raise ValueError(f"oracles= needs at least 2 oracle models; got {len(oracles)}")
    phi = lambda out_f, out_t: np.concatenate([logit_scaled_confidence(out_f, targets(forget)),
                                                logit_scaled_confidence(out_t, targets(test))], axis=-1)
    is_forget = np.r_[np.ones(len(forget), bool), np.zeros(len(test), bool)]
    result = reference_attack(phi(predict(model, forget), predict(model, test)),
                              phi(oracles.predict(forget), oracles.predict(test)), is_forget)
    out = result.summary()
    if len(oracles) < TIER1_REFERENCES:
        log.warning("evaluate: %d oracle reference models are fewer than the %d that tier-1 evidence needs; "
                    "evidence_tier stays 0", len(oracles), TIER1_REFERENCES)
    out["evidence_tier"] = 1.0 if len(oracles) >= TIER1_REFERENCES else 0.0
    return out


def _audit_evidence(evidence: Any, forget: Dataset, scores: dict[str, float]) -> dict[str, float]:
    from .audit.result import AuditResult

    if not isinstance(evidence, AuditResult):
        raise TypeError(f"evidence must be an expunge.audit.AuditResult or 'iam'; got {type(evidence).__name__}")
    mine = sorted(resolve(forget)[1].tolist())
    theirs = sorted(evidence.forget_base_index.tolist())
    if mine != theirs:
        raise ValueError(f"evidence is an audit of another forget set ({len(theirs)} examples) than this one "
                         f"({len(mine)} examples); audit this forget request")
    out = evidence.evidence()
    out["evidence_tier"] = max(scores["evidence_tier"], float(evidence.tier))
    return out


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
            out.update(_shares(to[keep], ty[keep]))
            phi = lambda o, y: torch.from_numpy(logit_scaled_confidence(o, y))
            out.update(svc_mia(phi(fo, fy), phi(ro, ry), phi(to[keep], ty[keep]), seed=seed).scores())
        else:
            out.update(_shares(ro, ry))
    else:
        out["forget_mae"] = _mae(fo, fy)
        out["retain_mae"] = _mae(ro, ry)
        if to is not None:
            out["test_mae"] = _mae(to, ty)
            out.update(svc_mia(per_example_loss(fo, fy, task), per_example_loss(ro, ry, task),
                               per_example_loss(to, ty, task), seed=seed).scores())
    return out


def _shares(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    if len(y) == 0:
        return {}
    share = lambda v: float(100.0 * torch.bincount(v).max() / len(v))
    return {"majority_acc": share(y), "top_class_share": share(logits.argmax(-1))}


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
