"""The audit of language models and image generators: the classification audit's models and scores, with models
trained one by one.

:func:`expunge.audit.audit` sends text data (task ``language``) and images for generators (task ``generation``)
here. The models are those of the classification audit (:mod:`expunge.audit.run`), with the same seed blocks: K
originals on all of ``train``, K oracles and K baseline oracles on ``retain``, each from a fresh initialisation
under its own seed (``expunge.train`` one model at a time: these models have no batched ensembles), the method run
once from each original and K times from original 0 (``expunge.unlearn``), and the SWAP test's K originals of the
swapped request and their unlearned models. Each stage holds its K models while it scores them and then drops them,
except the originals (kept until both unlearning stages have used them: at most 2K models at once), baseline
oracle 0 (tier 0's reference) and unlearned model 0 (the audited model); every score comes from
:func:`expunge.audit.scoring.evidence`, as for classifiers.

**φ per example**, higher = more like a training example:

- language: the logit of the length-normalised answer probability, log p − log(1 − p) with p = exp(−mean answer
  NLL) (:func:`expunge.lm.evaluate.answer_logit`; what the language tier-1 LiRA of ``evaluate(..., oracles=)``
  attacks), on forget rows, retain rows and the held-out (``test``) rows;
- generation: :func:`expunge.gen.attacks.membership_scores`: minus the denoising error at 10%, 30% and 50% of T
  with noise drawn once from the audit's seed (the same draws for every model) for diffusion models, the
  discriminator's logit for GANs; on forget, retain and test images.

**Per-model accuracy** (the challenge score's retain and test ratios, the tier-0 table's group rows): for language
models the answer-token accuracy under teacher forcing (the share of answer tokens the model's argmax predicts, mean
over rows, in %; TOFU's and OpenUnlearning's exact memorisation) on every forget, retain and test row (φ on retain
is kept for the sample of at most the test set's size that the retain leakage uses); image generators have no
per-model accuracy that is cheap enough for 7K models, so the challenge score has no final score and no ratios there
(left out of the summary and the reports), and the tier-0 table has the audited model's row only.

**Test examples are the non-members.** Language: rows no model trained on (in the authors corpus, the facts of the
holdout authors). Generation, for a class-wise request (every training image of the forgotten classes forgotten):
the held-out images of the forgotten classes only, so that members and non-members share their conditioning; the
retain leakage compares retain images with the held-out images of the retained classes. (A request that is not
class-wise takes every held-out image for both.) The oracles never saw the forgotten class, so per example U-LiRA,
ε and KLoM ask whether the method's models treat the class's training images as the oracles do: a model that still
draws the class is told apart there (and by tier 0's unlearning accuracy). Tier-1 LiRA compares the forget images
with held-out images of the same class (standardised per example by the oracles), so it sees a model that treats
the class's training images unlike its unseen ones (memorised images), not a class that is kept as such.

**Class-wise requests move together.** Every forget example shares one conditioning, the forgotten class, and how a
model treats that class moves its φ on all of them together (an oracle's discriminator, which never saw the class,
gives its images a logit of its own). The forget examples then act almost as one: numbers pooled over models and
examples vary from one set of K models to another about as much as a test on K models would. Measured on the digits
GAN (``examples/digits_gan_audit.yaml``, K = 16): U-LiRA told oracles from oracles with AUC 0.28 (0.5 expected),
and subtracting each model's median logit on held-out images of the other classes left it at 0.28, so the swing is
the class's, not a model-wide offset. The verdict therefore judges U-LiRA and F against permutation bands over
models and the audited model's LiRA against the held-out oracles' spread (:mod:`.tier2`,
:func:`expunge.verdict.audit_verdict`), which hold whatever the dependence between examples; at small K those bands
are wide, and only a larger K narrows them.

**SWAP test.** Generation: as for classifiers (:mod:`.swap`): B is drawn from the test images of the forget set's
classes (for a class-wise request, held-out images of the forgotten class: a request of the same kind). Language:
B is drawn from the held-out rows, whole groups at a time where the data has groups (held-out authors, so that a
request to forget authors swaps with one forgetting other authors; as many groups as fit in the forget set's size,
rows at random where none fits), and the K swapped originals train on retain ∪ B re-encoded with the data's
tokenizer. Both are skipped with the one-line note (``AuditResult.swap_note``) when switched off or when test
holds nothing of the forget set's kind (generation: no image of its classes).

**Tier 0**: ``expunge.evaluate`` of the audited model against baseline oracle 0 (TOFU/MUSE scores for language,
with the data's world facts when it has them; judge-read generation scores for generators), with ``scoring``'s
extra arguments (``max_examples``, ``samples_per_class``, ``attack``, ...).

Cost: as the classification audit, 4K full trainings and 3K runs of the method (3K and 2K without the SWAP test),
each model trained alone: on one core, K times (4 + 3 × the method's share of a training) one training's time.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from .. import api
from ..data.datasets import groups_of, resolve, targets
from ..devices import check_precision, run_precision, target_device
from ..evaluate import _forgotten_classes, evaluate
from ..methods import base as registry
from ..methods._common import fresh_initialisation
from ..threads import scoped
from .result import AuditResult, tier_for
from .scoring import evidence
from .swap import SWITCHED_OFF, SwapRequest, swap_note, swap_request
from .vulnerable import check_mode

log = logging.getLogger(__name__)
TASKS = ("language", "generation")
MIN_TEST = 2                    # the attacks' non-members: at least two test examples


def task_of(train: Any) -> str | None:
    """``"language"`` or ``"generation"`` when ``train`` is such data (the audit of this module), else None."""
    try:
        task = getattr(resolve(train)[0], "task", None)
    except (TypeError, ValueError, AttributeError):
        return None
    return task if task in TASKS else None


def check_task_audit(template: nn.Module, train: Dataset, test: Dataset, *, forget: Dataset, retain: Dataset,
                     method: str, method_args: dict[str, Any] | None = None, recipe: dict[str, Any],
                     n_models: int = 64, seed: int = 0, original: nn.Module | None = None, swap: bool = True,
                     mode: str = "standard", top: int | None = None, scoring: dict[str, Any] | None = None
                     ) -> tuple[dict[str, Any], np.ndarray]:
    """What :func:`task_audit` checks before training anything (ValueError/TypeError naming the bad input); returns
    the method's arguments and each forget example's position in ``train``."""
    from .run import _check, _positions

    task = task_of(train)
    if not isinstance(swap, bool):
        raise TypeError(f"swap must be True or False (play the SWAP test or not); got {swap!r}")
    check_scoring(scoring, task)
    args = _check(template, train, test, forget, retain, method, method_args, recipe, n_models, seed, original,
                  task=task)
    check_mode(mode, top, len(forget), n_models)
    if len(test) < MIN_TEST:
        raise ValueError(f"test has {len(test)} example(s); the audit's attacks need at least {MIN_TEST} test "
                         f"examples that no model trained on (the non-members)")
    nonmembers, retained = nonmember_splits(forget, test, task)
    for name, d in (("of the forgotten classes", nonmembers), ("of the retained classes", retained)):
        if retained is not None and len(d) < MIN_TEST:
            raise ValueError(f"test has {len(d)} image(s) {name} {list(_forgotten_classes(forget, None))}; a "
                             f"class-wise audit needs at least {MIN_TEST} of each (the non-members of the forget "
                             f"set's attacks and of the retain leakage)")
    if task == "language":
        _check_language(template, train, test, forget, retain, original)
        if swap:
            try:                                 # retain ∪ B re-encoded: a row the encoding cuts to nothing
                text_swap_request(forget, retain, nonmembers, seed)
            except ValueError as e:
                raise ValueError(f"the SWAP test's swapped training set cannot be encoded ({e}); pass swap=False "
                                 f"to skip the SWAP test") from None
    else:
        _check_generation(template, method, original)
        from ..methods._generative import GenerativeMethod, check_kind

        m = registry.get(method)(**args)
        if isinstance(m, GenerativeMethod):
            check_kind(template, m)           # a method for another kind of generator, refused in one line
    return args, _positions(train, forget, retain, test)


#: evaluate arguments the audit sets itself, refused in ``scoring``
AUDIT_SETS = ("seed", "reference", "forget", "retain", "test")


def check_scoring(scoring: dict[str, Any] | None, task: str) -> None:
    """``scoring``'s keys and values, by the rules of a config's ``scoring`` section
    (:func:`expunge.config.parse_scoring`), plus ``world`` (a Dataset: the language task's world facts); the
    arguments the audit gives ``evaluate`` itself (:data:`AUDIT_SETS`) are refused."""
    from ..config import ConfigError, SCORING_KEYS, parse_scoring

    if scoring is None:
        return
    if not isinstance(scoring, dict):
        raise TypeError(f"scoring must be a dict of extra expunge.evaluate arguments or None; got "
                        f"{type(scoring).__name__}")
    for key, value in scoring.items():
        if key in AUDIT_SETS:
            raise ValueError(f"scoring cannot set {key!r}: the audit gives evaluate its {', '.join(AUDIT_SETS)} "
                             f"itself; allowed: {', '.join(k for k, t in SCORING_KEYS.items() if t == task)}"
                             + (", world" if task == "language" else ""))
        if key == "world" and task == "language":
            if not isinstance(value, Dataset):
                raise TypeError(f"scoring['world'] must be a Dataset of text rows (the world facts); got "
                                f"{type(value).__name__}")
    try:
        parse_scoring({k: v for k, v in scoring.items() if not (k == "world" and task == "language")}, task)
    except ConfigError as e:
        raise ValueError(str(e).removeprefix("config error at ")) from None


def nonmember_splits(forget: Dataset, test: Dataset, task: str) -> tuple[Dataset, Dataset | None]:
    """The attacks' non-members: for an image generator's class-wise request, the test images of the forgotten
    classes (the forget set's kind) and, for the retain leakage, those of the retained classes; else all of
    ``test`` and None (the leakage uses ``test`` too)."""
    classes = _forgotten_classes(forget, None) if task == "generation" else None
    if not classes:
        return test, None
    of = torch.isin(targets(test), torch.tensor(classes))
    return Subset(test, np.flatnonzero(of.numpy()).tolist()), Subset(test, np.flatnonzero(~of.numpy()).tolist())


def _check_language(template: nn.Module, train: Dataset, test: Dataset, forget: Dataset, retain: Dataset,
                    original: nn.Module | None) -> None:
    from ..data.text import text_base
    from ..lm.models import as_language_model

    first = text_base(train)[0].tokenizer
    if any(not _same_tokenizer(first, text_base(d)[0].tokenizer) for d in (test, forget, retain)):
        raise ValueError("train, test, forget and retain must be encoded with one tokenizer (the same vocabulary: "
                         "the swapped request and the attacks compare rows across them)")
    for name, m in (("template", template), ("original", original)):
        if m is not None:
            as_language_model(m, train)


def _same_tokenizer(a: Any, b: Any) -> bool:
    """One tokenizer, or two loads of it: the same vocabulary (token → id)."""
    return a is b or (type(a) is type(b) and a.get_vocab() == b.get_vocab())


def _check_generation(template: nn.Module, method: str, original: nn.Module | None) -> None:
    from ..gen.attacks import membership_kind
    from ..gen.base import is_generative

    for name, m in (("template", template), ("original", original)):
        if m is not None and (not is_generative(m) or membership_kind(m) is None):
            raise ValueError(f"{name} must be an image generator with a membership score (an expunge.gen diffusion "
                             f"model or GAN, not distilled to one step); got {type(m).__name__}")
    if getattr(registry.get(method), "distils_one_step", False):    # no denoising error to score
        raise ValueError(f"method {method!r} distils a one-step generator, whose denoising error says nothing about "
                         f"membership; the audit cannot score it (audit another generation method)")


@scoped
def task_audit(template: nn.Module, train: Dataset, test: Dataset, *, forget: Dataset, retain: Dataset,
               method: str, method_args: dict[str, Any] | None = None, recipe: dict[str, Any], n_models: int = 64,
               seed: int = 0, original: nn.Module | None = None, device: Any = None, precision: str | None = None,
               swap: bool = True, mode: str = "standard", top: int | None = None,
               scoring: dict[str, Any] | None = None) -> AuditResult:
    """The audit of :func:`expunge.audit.audit` for language models and image generators (module docstring)."""
    from .run import STAGES, SWAP_STAGES, _retain_sample, _seeds, _Stages

    args, index = check_task_audit(template, train, test, forget=forget, retain=retain, method=method,
                                   method_args=method_args, recipe=recipe, n_models=n_models, seed=seed,
                                   original=original, swap=swap, mode=mode, top=top, scoring=scoring)
    task = task_of(train)
    mode, top = check_mode(mode, top, len(forget), n_models)
    nonmembers, retained = nonmember_splits(forget, test, task)
    note = (swap_note(forget, nonmembers, swap) if task == "generation" else None if swap else SWITCHED_OFF)
    if note is not None:
        log.info("audit: %s", note)
    request = None
    if note is None:
        request = swap_request(forget, retain, nonmembers, seed) if task == "generation" else \
            text_swap_request(forget, retain, nonmembers, seed)
    target = target_device(device, template)
    on = {"device": target, "precision": check_precision(run_precision(precision), target)}
    k = n_models
    sample = _retain_sample(len(retain), len(retained if retained is not None else nonmembers), seed)
    # language: every retain row is scored (answer-token accuracy on the whole retain set, as for classifiers) and
    # φ kept on the sample; generation: the sample alone (no per-model accuracy)
    whole = task == "language"
    splits = {"forget": forget, "retain": retain if whole else Subset(retain, sample.tolist()), "test": nonmembers,
              **({"test_retained": retained} if retained is not None else {})}
    take = {"retain": sample} if whole else {}
    swap_splits = {"forget": forget, "test": nonmembers}
    score = _phi_language if task == "language" else _phi_generation(seed)
    phi: dict[str, dict[str, np.ndarray]] = {}
    acc: dict[str, dict[str, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    log.info("%s audit of %s with K=%d models of each kind, trained one by one (tier %d reachable)", task, method, k,
             tier_for(k))
    stages = STAGES if request is not None else tuple(s for s in STAGES if s not in SWAP_STAGES)

    def trained(data: Dataset, block: int) -> list[nn.Module]:
        return [api.train(fresh_initialisation(template, s), data, seed=s, **on, **recipe)
                for s in _seeds(seed, k, block)]

    def unlearned(models: list[nn.Module], f: Dataset, r: Dataset, block: int = 0) -> list[nn.Module]:
        return [api.unlearn(m, forget=f, retain=r, method=method, seed=s, **on, **args)
                for m, s in zip(models, _seeds(seed, k, block))]

    def scored(group: str, models: list[nn.Module]) -> list[nn.Module]:
        phi[group], acc[group] = _group_phi(models, splits, score, take)
        return models

    with _Stages(seconds, len(stages)) as stage:          # each stage's time includes scoring its models
        originals = stage("originals", lambda: scored("original", trained(train, 0)))
        stage("oracles", lambda: scored("oracle", trained(retain, 1)))
        reference = stage("baseline", lambda: scored("baseline", trained(retain, 2)))[0]
        model = stage("unlearn", lambda: scored("unlearned", unlearned(originals, forget, retain)))[0]
        stage("unlearn one original", lambda: scored("one_original", unlearned([originals[0]] * k, forget, retain)))
        del originals
        swapped: dict[str, dict[str, np.ndarray]] = {}
        if request is not None:
            def swap_trained() -> list[nn.Module]:
                models = trained(request.train, 3)
                swapped["swap_original"] = _group_phi(models, swap_splits, score, take)[0]
                return models

            swap_originals = stage("swap originals", swap_trained)
            stage("swap unlearn", lambda: swapped.__setitem__("swap_unlearned", _group_phi(
                unlearned(swap_originals, request.forget, request.retain, block=3), swap_splits, score, take)[0]))
            del swap_originals
        stage.begin("scoring")
        if original is not None:
            model = api.unlearn(original, forget=forget, retain=retain, method=method, seed=seed, **on, **args)
            audited = f"the given original, unlearned with {method} (seed {seed})"
        else:
            audited = "member 0 of the unlearned models"
        mine = {s: p[0] for s, p in _group_phi([model], splits, score, take)[0].items()}
        on_swap = _swap_phi(phi, swapped, request) if request is not None else None
        labels = _example_labels(forget, task)
        found = evidence(phi, acc if task == "language" else None, mine, seed=seed, index=index, labels=labels,
                         top=top, swap=on_swap)
        extra = dict(scoring or {})
        if task == "language" and "world" not in extra:
            from ..experiment import scoring_sets

            extra.update(scoring_sets(train))
        scores = evaluate(model, forget=forget, retain=retain, test=test, reference=reference, seed=seed, **extra)
        stage.end()
    seconds["wall"] = time.perf_counter() - start
    sizes = {"train": len(train), "forget": len(forget), "retain": len(retain), "test": len(nonmembers),
             "retain_sample": len(sample)}
    if retained is not None:
        sizes["test_retained_classes"] = len(retained)
    if request is not None:
        sizes["swap_examples"] = len(request.forget_positions)
    tier = tier_for(k)
    log.info("%s audit done in %.1fs: tier %d", task, seconds["wall"], tier)
    return AuditResult(tier=tier, n_models=k, method=method, method_args=args, seed=seed, seconds=seconds,
                       audited=audited, swap_note=note, task=task, scores=scores, sizes=sizes,
                       forget_base_index=resolve(forget)[1].numpy(), **found)


def _group_phi(models: list[nn.Module], splits: dict[str, Dataset],
               score: Callable[[nn.Module, Dataset], tuple[np.ndarray, np.ndarray | None]],
               take: dict[str, np.ndarray] | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """φ ``[K, N]`` per split and per-model accuracy (%) ``[K]`` per split (NaN where the task has none); φ of a
    split named in ``take`` is kept at those positions only (its accuracy is over the whole split)."""
    take = take or {}
    phi: dict[str, list[np.ndarray]] = {s: [] for s in splits}
    acc: dict[str, list[float]] = {s: [] for s in splits}
    for m in models:
        for s, d in splits.items():
            p, hits = score(m, d)
            phi[s].append(p[take[s]] if s in take else p)
            acc[s].append(float(np.mean(hits)) if hits is not None else float("nan"))
    return {s: np.stack(v) for s, v in phi.items()}, {s: np.asarray(v) for s, v in acc.items()}


def _swap_phi(phi: dict[str, dict[str, np.ndarray]], swapped: dict[str, dict[str, np.ndarray]],
              request: SwapRequest) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """φ of every group on A (the forget examples the games use) and on B (the test examples swapped in)."""
    groups = {**{g: phi[g] for g in ("unlearned", "original", "oracle", "baseline")}, **swapped}
    on_a = {g: p["forget"][:, request.forget_positions] for g, p in groups.items()}
    on_b = {g: p["test"][:, request.test_positions] for g, p in groups.items()}
    return on_a, on_b


def _example_labels(forget: Dataset, task: str) -> np.ndarray:
    """Per forget example: its class (generation) or its group (language; -1 without groups)."""
    if task == "generation":
        return targets(forget).numpy()
    groups = groups_of(forget)
    if groups is None or not np.issubdtype(np.asarray(groups).dtype, np.number):
        return np.full(len(forget), -1, dtype=np.int64)
    return np.asarray(groups).astype(np.int64)


@torch.no_grad()
def _phi_language(model: nn.Module, data: Dataset, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """φ (answer logit) and answer-token accuracy (%) of every row of ``data``."""
    from ..data.text import text_base
    from ..lm.attacks import MIN_K
    from ..lm.evaluate import answer_logit, row_statistics

    base, idx = text_base(data)
    was_training = model.training
    model.eval()
    try:
        stats = row_statistics(model, base.x[idx], base.y[idx], MIN_K, batch_size)
    finally:
        model.train(was_training)
    return answer_logit(stats["mean_nll"]), 100.0 * stats["correct"] / stats["n_tokens"]


def _phi_generation(seed: int) -> Callable[[nn.Module, Dataset], tuple[np.ndarray, None]]:
    """φ (the membership score of :mod:`expunge.gen.attacks`, noise drawn from ``seed``) of every image."""
    from ..gen.attacks import membership_scores

    def score(model: nn.Module, data: Dataset) -> tuple[np.ndarray, None]:
        base, idx = resolve(data)
        return membership_scores(model, base.x[idx], base.y[idx], seed=seed), None

    return score


def text_swap_request(forget: Dataset, retain: Dataset, test: Dataset, seed: int) -> SwapRequest:
    """The swapped request for text data: B drawn from ``test``'s rows (whole groups while they fit in the forget
    set's size, else rows at random), retain ∪ B as one TextDataset (module docstring)."""
    from ..data.text import TextDataset, text_base

    rb, ri = text_base(retain)
    tb, ti = text_base(test)
    n_a = len(forget)
    g = np.random.default_rng(seed)
    groups = groups_of(test)
    chosen: list[int] = []
    if groups is not None:
        for v in g.permutation(np.unique(groups)):
            rows = np.flatnonzero(groups == v)
            if len(chosen) + len(rows) <= n_a:
                chosen.extend(rows.tolist())
    if not chosen:
        chosen = g.choice(len(test), min(n_a, len(test)), replace=False).tolist()
    tpos = np.sort(np.asarray(chosen, dtype=np.int64))
    fpos = np.sort(g.choice(n_a, len(tpos), replace=False)).astype(np.int64)
    records = [rb.records[int(i)] for i in ri] + [tb.records[int(i)] for i in ti[torch.as_tensor(tpos)]]
    r_groups = groups_of(retain)
    both = None if r_groups is None or groups is None else np.concatenate([r_groups, groups[tpos]])
    data = TextDataset(records, rb.tokenizer, max_length=rb.max_length, groups=both,
                       name=f"{rb.name or 'retain'} + swapped test rows")
    n_r = len(ri)
    return SwapRequest(data, Subset(data, range(n_r, len(data))), Subset(data, range(n_r)), fpos, tpos)
