"""``audit``: train the originals, oracles and baseline oracles as ensembles, unlearn K times, and score."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from .. import api
from .. import ensemble as E
from ..data.datasets import resolve, targets
from ..devices import check_precision, run_precision, target_device
from ..evaluate import _forgotten_classes, evaluate
from ..methods import base as registry
from ..methods.base import TrainArgs, check_request
from ..metrics import logit_scaled_confidence, predict
from ..training import Recipe
from .result import AuditResult, tier_for
from .scoring import evidence
from .swap import SwapRequest, swap_note, swap_request
from .tasks import check_task_audit, task_audit, task_of
from .vulnerable import check_mode

log = logging.getLogger(__name__)
T = TypeVar("T")
STAGES = ("originals", "oracles", "baseline", "unlearn", "unlearn one original", "swap originals", "swap unlearn",
          "scoring")
SWAP_STAGES = ("swap originals", "swap unlearn")


def audit(template: nn.Module, train: Dataset, test: Dataset, *, forget: Dataset, retain: Dataset, method: str,
          method_args: dict[str, Any] | None = None, recipe: dict[str, Any], n_models: int = 64, seed: int = 0,
          original: nn.Module | None = None, device: Any = None, precision: str | None = None,
          swap: bool = True, mode: str = "standard", top: int | None = None,
          shared: dict[str, E.Ensemble] | None = None, scoring: dict[str, Any] | None = None) -> AuditResult:
    """Audit ``method`` on this forget request with ``n_models`` (K) models of each kind.

    Trains K originals on all of ``train`` (seeds ``seed`` … ``seed + K − 1``), K oracles on ``retain`` (the next
    K seeds) and K baseline oracles (the K after those), all with ``recipe`` (the keywords of ``expunge.train``)
    from ``template``'s architecture; unlearns original k with ``method`` and seed ``seed + k``, and original 0
    once more with each of those seeds (the NeurIPS 2023 protocol); trains K originals of the swapped request
    (retain ∪ B, B drawn from ``test``: :mod:`.swap`, the K seeds after the baseline's) and unlearns B from each,
    unless ``swap`` is False (K fewer full trainings and K fewer runs of the method; no SWAP-test advantage) or
    ``test`` holds no example of the forget set's labels (the swap cannot be formed); either way the result's
    ``swap_note`` says so in one line.
    ``mode="vulnerable"`` adds the vulnerable-sample audit (:mod:`.vulnerable`, RULI): the ``top`` forget
    examples (default ``min(20, |forget|)``) that LiRA separates best between the originals and the baseline
    oracles, and the efficacy and privacy games on them beside the whole forget set and the oracle-vs-oracle
    baseline; no further model is trained.
    Then scores tier 2 (challenge ε and F in both variants, KLoM, U-LiRA, each beside its oracle-vs-oracle
    baseline), tier 1 (offline LiRA of the audited model with the K oracles as references, beside the baseline
    oracles as held-out targets), the retain leakage (:mod:`.leakage`), the SWAP-test advantage
    (:mod:`expunge.metrics.advantage`) and tier 0 (``expunge.evaluate`` against a baseline oracle). The audited
    model is ``original`` unlearned with ``method`` and seed ``seed`` when given, else the first unlearned model.
    Language models and image generators (text data, images made ready by ``expunge.data.for_generation``) are
    audited the same way with models trained one by one (:mod:`.tasks`; ``shared`` is for classifiers only);
    ``scoring``: extra ``expunge.evaluate`` arguments for their tier 0 (``max_examples``, ``samples_per_class``,
    ``attack``, ...; classifiers take none).
    Repeatable for a seed. ``device`` and ``precision``: where every model is trained and
    scored (default: ``template``'s device) and the training precision, as for ``expunge.train``.
    ``shared``: the ensembles that do not depend on the method (originals, oracles, baseline oracles, swapped
    originals), taken from it when present and put in it when trained; :func:`audit_methods` passes one per request
    so that several methods are audited on the same models. Leave it None otherwise.
    """
    if task_of(train) is not None:
        return task_audit(template, train, test, forget=forget, retain=retain, method=method,
                          method_args=method_args, recipe=recipe, n_models=n_models, seed=seed, original=original,
                          device=device, precision=precision, swap=swap, mode=mode, top=top, scoring=scoring)
    args, index = check_audit(template, train, test, forget=forget, retain=retain, method=method,
                              method_args=method_args, recipe=recipe, n_models=n_models, seed=seed, original=original,
                              swap=swap, mode=mode, top=top, scoring=scoring)
    mode, top = check_mode(mode, top, len(forget), n_models)
    note = swap_note(forget, test, swap)
    if note is not None:
        log.info("audit: %s", note)
    request = swap_request(forget, retain, test, seed) if note is None else None
    target = target_device(device, template)
    precision = check_precision(run_precision(precision), target)
    on = {"device": target, "precision": precision}
    k = n_models
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    log.info("audit of %s with K=%d models of each kind (tier %d reachable)", method, k, tier_for(k))
    stages = STAGES if request is not None else tuple(s for s in STAGES if s not in SWAP_STAGES)
    with _Stages(seconds, len(stages)) as stage:
        originals = stage("originals", lambda: _reused(shared, "original", lambda: E.train(
            template, train, seeds=_seeds(seed, k, 0), **on, **recipe)))
        oracles = stage("oracles", lambda: _reused(shared, "oracle", lambda: E.train(
            template, retain, seeds=_seeds(seed, k, 1), **on, **recipe)))
        baseline = stage("baseline", lambda: _reused(shared, "baseline", lambda: E.train(
            template, retain, seeds=_seeds(seed, k, 2), **on, **recipe)))
        unlearned = stage("unlearn", lambda: E.unlearn(originals.members(), forget=forget, retain=retain,
                                                       method=method, seeds=_seeds(seed, k, 0), **on, **args))
        one_original = stage("unlearn one original", lambda: E.unlearn(
            originals.member(0), forget=forget, retain=retain, method=method, seeds=_seeds(seed, k, 0), **on, **args))
        swapped: dict[str, E.Ensemble] = {}
        if request is not None:
            swapped["swap_original"] = stage("swap originals", lambda: _reused(shared, "swap_original", lambda: E.train(
                template, request.train, seeds=_seeds(seed, k, 3), **on, **recipe)))
            swapped["swap_unlearned"] = stage("swap unlearn", lambda: E.unlearn(
                swapped["swap_original"].members(), forget=request.forget, retain=request.retain, method=method,
                seeds=_seeds(seed, k, 3), **on, **args))
        stage.begin("scoring")
        if original is not None:
            model = api.unlearn(original, forget=forget, retain=retain, method=method, seed=seed, **on, **args)
            audited = f"the given original, unlearned with {method} (seed {seed})"
        else:
            model, audited = unlearned.member(0), "member 0 of the unlearned models"
        result = _score(model, {"unlearned": unlearned, "oracle": oracles, "baseline": baseline,
                                "original": originals, "one_original": one_original},
                        swapped, request, train, test, forget, retain, index, seed, top)
        from .iam import iam_with_oracle      # IAM of the audited model and an oracle: one training on half retain;
        result["iam"] = iam_with_oracle(model, baseline.member(0), forget=forget, retain=retain, test=test, seed=seed,
                                        band=(oracles, baseline))   # the 2K oracles' band: forward passes only
        stage.end()
    seconds["wall"] = time.perf_counter() - start
    tier = tier_for(k)
    log.info("audit done in %.1fs: tier %d", seconds["wall"], tier)
    return AuditResult(tier=tier, n_models=k, method=method, method_args=args, seed=seed, seconds=seconds,
                       audited=audited, swap_note=note, **result)


def audit_methods(template: nn.Module, train: Dataset, test: Dataset, *, forget: Dataset, retain: Dataset,
                  methods: dict[str, dict[str, Any] | None], shared: dict[str, E.Ensemble] | None = None,
                  **settings: Any) -> dict[str, AuditResult]:
    """:func:`audit` of each method in ``methods`` (name → its arguments, None for its defaults) on one forget
    request, with the same ``settings`` (the other keywords of :func:`audit`): the originals, oracles, baseline
    oracles and swapped originals, which do not depend on the method, are trained once and shared, and each result
    equals that of ``audit`` called for its method alone. Every method is checked before any model is trained.
    ``shared``: an empty dict to receive those ensembles (keys ``original``, ``oracle``, ``baseline``,
    ``swap_original``), e.g. to score more models against the same oracles afterwards.
    Classifiers only share: language models and image generators (:mod:`.tasks`, trained one by one) are audited
    method by method, each training its own models, and ``shared`` is refused for them."""
    if not isinstance(methods, dict) or not methods:
        raise TypeError(f"methods must be a non-empty dict of method name -> arguments; got {methods!r}")
    if shared is not None and task_of(train) is not None:
        raise ValueError("shared= applies to classifiers: language models and image generators are audited method "
                         "by method, each with models of its own; leave shared=None")
    if shared is not None and (not isinstance(shared, dict) or shared):
        raise ValueError("shared must be None or an empty dict (it receives the ensembles this request trains)")
    check = {k: v for k, v in settings.items() if k not in ("device", "precision")}
    for name, args in methods.items():
        check_audit(template, train, test, forget=forget, retain=retain, method=name, method_args=args, **check)
    shared = {} if shared is None else shared
    return {name: audit(template, train, test, forget=forget, retain=retain, method=name, method_args=args,
                        shared=shared, **settings) for name, args in methods.items()}


def _reused(shared: dict[str, E.Ensemble] | None, name: str, train: Callable[[], E.Ensemble]) -> E.Ensemble:
    """``shared[name]`` when there, else ``train()`` (kept in ``shared`` when given)."""
    if shared is None:
        return train()
    if name not in shared:
        shared[name] = train()
    return shared[name]


def check_audit(template: nn.Module, train: Dataset, test: Dataset, *, forget: Dataset, retain: Dataset,
                method: str, method_args: dict[str, Any] | None = None, recipe: dict[str, Any], n_models: int = 64,
                seed: int = 0, original: nn.Module | None = None, swap: bool = True, mode: str = "standard",
                top: int | None = None, scoring: dict[str, Any] | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """What :func:`audit` checks before training anything (ValueError/TypeError naming the bad input); returns the
    method's arguments and each forget example's position in ``train``."""
    if task_of(train) is not None:
        return check_task_audit(template, train, test, forget=forget, retain=retain, method=method,
                                method_args=method_args, recipe=recipe, n_models=n_models, seed=seed,
                                original=original, swap=swap, mode=mode, top=top, scoring=scoring)
    if scoring and scoring != {"evidence": "iam"}:        # IAM: every classifier audit reports it anyway
        raise ValueError("scoring= applies to the language and generation audits (extra evaluate arguments for "
                         "their tier 0); a classifier's audit takes none but {'evidence': 'iam'}, which it always "
                         "reports")
    if not isinstance(swap, bool):
        raise TypeError(f"swap must be True or False (play the SWAP test or not); got {swap!r}")
    args = _check(template, train, test, forget, retain, method, method_args, recipe, n_models, seed, original)
    check_mode(mode, top, len(forget), n_models)
    index = _positions(train, forget, retain, test)
    return args, index


def _score(model: nn.Module, ensembles: dict[str, E.Ensemble], swapped: dict[str, E.Ensemble], swap: SwapRequest | None,
           train: Dataset, test: Dataset, forget: Dataset, retain: Dataset, index: np.ndarray, seed: int,
           top: int | None = None) -> dict[str, Any]:
    splits = {"forget": forget, "retain": retain, "test": test}
    labels = {s: targets(d) for s, d in splits.items()}
    keep = torch.ones(len(labels["test"]), dtype=torch.bool)
    classes = _forgotten_classes(forget, None)
    if classes:                               # class-wise forgetting: test accuracy over the remaining classes
        keep = ~torch.isin(labels["test"], torch.tensor(classes))
    sample = _retain_sample(len(retain), len(test), seed)
    phi: dict[str, dict[str, np.ndarray]] = {}
    acc: dict[str, dict[str, np.ndarray]] = {}
    for g, ens in ensembles.items():
        out = {s: _phi_and_hits(ens, d, labels[s]) for s, d in splits.items()}
        phi[g] = {"forget": out["forget"][0], "retain": out["retain"][0][:, sample], "test": out["test"][0]}
        acc[g] = {"forget": _percent(out["forget"][1]), "retain": _percent(out["retain"][1]),
                  "test": _percent(out["test"][1][:, keep.numpy()])}
    retain_sample = Subset(retain, sample.tolist())
    mine = {s: logit_scaled_confidence(predict(model, d), y) for s, d, y in (
        ("forget", forget, labels["forget"]), ("test", test, labels["test"]),
        ("retain", retain_sample, labels["retain"][torch.as_tensor(sample)]))}
    on_swap = _swap_phi(phi, swapped, swap, forget, test, labels) if swap is not None else None
    found = evidence(phi, acc, mine, seed=seed, index=index, labels=labels["forget"].numpy(), top=top, swap=on_swap)
    scores = evaluate(model, forget=forget, retain=retain, test=test, reference=ensembles["baseline"].member(0),
                      seed=seed)
    sizes = {"train": len(train), "forget": len(forget), "retain": len(retain), "test": len(test),
             "retain_sample": len(sample)}
    if swap is not None:
        sizes["swap_examples"] = len(swap.forget_positions)
    return {**found, "scores": scores, "sizes": sizes, "forget_base_index": resolve(forget)[1].numpy()}


def _swap_phi(phi: dict[str, dict[str, np.ndarray]], swapped: dict[str, E.Ensemble], swap: SwapRequest,
              forget: Dataset, test: Dataset, labels: dict[str, torch.Tensor]
              ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The SWAP test's inputs (:mod:`.swap`): φ of every group on A (the forget examples the games use) and on B."""
    a_set, b_set = Subset(forget, swap.forget_positions.tolist()), Subset(test, swap.test_positions.tolist())
    y_a, y_b = labels["forget"][torch.as_tensor(swap.forget_positions)], labels["test"][torch.as_tensor(
        swap.test_positions)]
    on_a = {g: phi[g]["forget"][:, swap.forget_positions] for g in ("unlearned", "original", "oracle", "baseline")}
    on_b = {g: phi[g]["test"][:, swap.test_positions] for g in ("unlearned", "original", "oracle", "baseline")}
    for g, ens in swapped.items():
        on_a[g], on_b[g] = _phi_and_hits(ens, a_set, y_a)[0], _phi_and_hits(ens, b_set, y_b)[0]
    return on_a, on_b


def _phi_and_hits(ens: E.Ensemble, data: Dataset, y: torch.Tensor, chunk: int = 4096
                  ) -> tuple[np.ndarray, np.ndarray]:
    """φ ``[K, N]`` and correctness ``[K, N]`` of every member on ``data``, ``chunk`` examples at a time (the
    ``[K, N, C]`` logits of a large split are never held at once)."""
    phis, hits = [], []
    for lo in range(0, len(data), chunk):
        part = range(lo, min(lo + chunk, len(data)))
        z = ens.predict(Subset(data, part))
        phis.append(logit_scaled_confidence(z, y[lo:part.stop]))
        hits.append((z.argmax(-1) == y[lo:part.stop]).numpy())
    return np.concatenate(phis, axis=1), np.concatenate(hits, axis=1)


def _percent(hits: np.ndarray) -> np.ndarray:
    """Per-model accuracy (%) from ``[K, N]`` correctness (NaN for no examples)."""
    return 100.0 * hits.mean(1) if hits.shape[1] else np.full(hits.shape[0], np.nan)


def _retain_sample(n_retain: int, n: int, seed: int) -> np.ndarray:
    """Positions of at most ``n`` retain examples drawn at random (seeded), in retain order (KLoM's retain set)."""
    if n_retain <= n:
        return np.arange(n_retain)
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n_retain, generator=g, device="cpu")[:n].sort().values.numpy()


def _seeds(seed: int, k: int, block: int) -> list[int]:
    return list(range(seed + block * k, seed + (block + 1) * k))


def _positions(train: Dataset, forget: Dataset, retain: Dataset, test: Dataset) -> np.ndarray:
    """Each forget example's position in ``train``; raises unless forget and retain are subsets of ``train`` and
    ``test`` is disjoint from it."""
    base, idx = resolve(train)
    where = {int(b): i for i, b in enumerate(idx.tolist())}
    out = None
    for name, d in (("forget", forget), ("retain", retain)):
        b, sub = resolve(d)
        missing = [int(i) for i in sub.tolist() if int(i) not in where]
        if b is not base or missing:
            why = "it is over other data" if b is not base else f"{len(missing)} of its examples are not in train"
            raise ValueError(f"{name} must be a subset of train (as split_forget(train, ...) returns); {why}")
        if name == "forget":
            out = np.array([where[int(i)] for i in sub.tolist()], dtype=np.int64)
    b, sub = resolve(test)
    if b is base and any(int(i) in where for i in sub.tolist()):
        raise ValueError("test shares examples with train; the attacks need test examples that no model trained on")
    return out


def _check(template, train, test, forget, retain, method, method_args, recipe, n_models, seed, original,
           task="classification"):
    if not isinstance(template, nn.Module):
        raise TypeError(f"template must be a torch nn.Module; got {type(template).__name__}")
    if original is not None and not isinstance(original, nn.Module):
        raise TypeError(f"original must be a torch nn.Module or None; got {type(original).__name__}")
    if isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 2:
        raise ValueError(f"n_models={n_models!r} is not allowed; the audit needs an integer >= 2 (tier 1 from "
                         f"16, tier 2 from 64)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} is not allowed; expected an integer >= 0")
    if not isinstance(recipe, dict):
        raise TypeError(f"recipe must be a dict of expunge.train keywords; got {type(recipe).__name__}")
    Recipe.from_dict(recipe)
    if method_args is not None and not isinstance(method_args, dict):
        raise TypeError(f"method_args must be a dict or None; got {type(method_args).__name__}")
    args = dict(method_args or {})
    cls = registry.get(method) if isinstance(method, str) else None
    if cls is None:
        raise TypeError(f"method must be a method name; got {type(method).__name__}")
    if cls.needs_special_original:
        raise ValueError(f"method {method!r} needs an original trained its own way; the audit trains ordinary "
                         "originals, so it cannot audit this method")
    for name, d in (("train", train), ("test", test), ("forget", forget), ("retain", retain)):
        if resolve(d)[0].task != task:
            same = "" if task == "classification" else f", every set of one task (train is {task} data)"
            raise ValueError(f"the audit scores classifiers, language models and image generators{same}; {name} is a "
                             f"{resolve(d)[0].task} dataset")
        if len(d) == 0:
            raise ValueError(f"{name} is empty")
    m = cls(**args)
    if isinstance(m.args, TrainArgs):
        m.args.recipe()                       # the method's training settings, checked before any training
    check_request(template, forget, retain, m)
    return args


class _Stages:
    """Times named stages into ``seconds``, logs them, and shows their progress (a bar on a terminal, timed lines
    elsewhere: ``expunge.progress``)."""

    def __init__(self, seconds: dict[str, float], n_stages: int = len(STAGES)):
        self.seconds, self.name, self.t0, self.n_stages = seconds, None, 0.0, n_stages

    def __enter__(self) -> "_Stages":
        from ..progress import Phase

        self.bar = Phase("audit", self.n_stages, "stage").__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()

    def begin(self, name: str) -> None:
        self.name, self.t0 = name, time.perf_counter()
        self.bar.update(self.bar.done, stage=name)
        log.info("audit: %s ...", name)

    def end(self) -> None:
        self.seconds[self.name] = time.perf_counter() - self.t0
        log.info("audit: %s took %.1fs", self.name, self.seconds[self.name])
        self.bar.advance()

    def __call__(self, name: str, fn: Callable[[], T]) -> T:
        self.begin(name)
        out = fn()
        self.end()
        return out
