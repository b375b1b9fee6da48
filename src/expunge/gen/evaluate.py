"""``evaluate_generation``: the scores of a class-conditional image generator that was asked to forget classes, and
its gaps to the oracle, as one flat dict of floats (what ``expunge.evaluate`` returns for the generation task).

Every image score is read by the **judge** (:mod:`expunge.gen.judge`), a classifier trained here on the real
training images (the base dataset of ``forget``; its held-out accuracy is measured on ``test`` when given), with
its own fixed seed: one instrument for every evaluation seed, model and oracle.
Each model draws ``samples_per_class`` (:data:`SAMPLES_PER_CLASS`, 50) images of every class in one batch from a
seed derived from ``seed``, so a model and its reference are compared on the same starting noise (500 samples of
the embedded 0.7M-parameter UNet at 8×8 cost ~8.5 CPU-s, ``benchmarks/results/diffusion_recipe.json``).

Scales: accuracies and ``attack_success`` in percent; AUCs and TPRs are fractions in [0, 1] (as the attack
literature reports them); Fréchet distances in squared judge-feature units; every ``gap_*`` of a percentage or a
fraction, and ``avg_gap``, in percentage points.

- ``gen_acc_class_k``: % of the samples conditioned on class k that the judge assigns to k (every class).
- ``unlearning_accuracy``: % of the samples conditioned on a forgotten class that the judge does not assign to it
  (SalUn's UA; 100 for a model that no longer draws the class, ~0 for one that still does).
- ``retain_generation_accuracy``: the mean of ``gen_acc_class_k`` over the retained classes.
- ``frechet_class_k``: the Fréchet distance (:func:`expunge.gen.metrics.frechet_distance`, on the judge's
  penultimate features; not FID, which reads Inception features) between class k's samples and the real images
  of class k (retain's; for a forgotten class, forget's); ``frechet_retain``: their mean over retained classes.
- ``mia_auc``, ``mia_tpr_at_1fpr`` (with ``test`` holding images of the forget set's classes, and a model that
  offers a membership score: :mod:`expunge.gen.attacks`): the forget images as members against the test images of
  the same classes; diffusion models by their denoising error at 10%, 30% and 50% of T, GANs by the
  discriminator's logit. ``mia_n_members`` and ``mia_n_nonmembers`` count them.
- ``attack_success`` (``attack=True`` and a model with ``embed`` and ``sample(embeddings=, grad=)``): the mean over
  forgotten classes of the % of samples judged as the class after an embedding-space search near its conditioning
  (:func:`expunge.gen.attacks.embedding_attack`); the search climbs a second judge trained from another seed, so
  that images which only fool the scoring judge do not count. Absent, not guessed, for a model that cannot be
  attacked so.
- ``judge_accuracy``: the judge's held-out accuracy (%); ``n_samples``: images drawn per model for the judged
  scores (``samples_per_class`` × classes).

With ``reference`` (the oracle: retrained on retain), sampled with the same seeds:

- ``frechet_to_reference``: the mean over retained classes of the Fréchet distance between the model's and the
  reference's samples of the class; ``frechet_to_reference_forgotten``: the same over the forgotten classes.
- ``reference_X`` and ``gap_X`` = |X − X_reference| for X in :data:`COMPARED` (where both have X; fractions
  × 100, so every gap of a score in [0, 1] or percent is in percentage points; ``gap_frechet_retain`` is in
  feature units).
- ``avg_gap``: the mean of ``gap_unlearning_accuracy``, ``gap_retain_generation_accuracy``, ``gap_mia_auc`` and
  ``gap_attack_success`` (:data:`AVG_GAP_KEYS`, those present; the classification task's Avg. Gap carried to the
  scores a generator has: forgetting, retained quality, membership and robustness); ``avg_gap_terms`` counts
  them, since a call without ``test`` or without the attack averages fewer.

Always: ``seconds`` (the model's recorded wall time) and with a reference ``rte`` (% of the reference's);
``evidence_tier`` = 0 (population scores of one model against one oracle). The reference's own scores and samples
are remembered for the same weights, data and settings (the last :data:`REFERENCE_CACHE_SIZE`): a benchmark scores
many models against one oracle.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import resolve
from ..evaluate import content_key
from ..seeds import derive
from ..threads import scoped
from . import attacks as A
from . import metrics as M
from .base import is_generative
from .judge import Judge, check_accuracy, judge as train_judge

SAMPLES_PER_CLASS = 50
COMPARED = ("unlearning_accuracy", "retain_generation_accuracy", "frechet_retain", "mia_auc", "mia_tpr_at_1fpr",
            "attack_success")
FRACTIONS = ("mia_auc", "mia_tpr_at_1fpr")     # in [0, 1]: their gaps are reported × 100
AVG_GAP_KEYS = ("unlearning_accuracy", "retain_generation_accuracy", "mia_auc", "attack_success")
REFERENCE_CACHE_SIZE = 4
SEARCH_JUDGE_SEED = 1     # the judge the embedding attack searches against; the scoring judge has seed 0


@dataclass
class _Raw:
    """One model's scores and the judge features of its samples per class (for distances to the reference)."""

    scores: dict[str, float]
    features: dict[int, torch.Tensor]


@scoped
def evaluate_generation(model: nn.Module, *, forget: Dataset, retain: Dataset, test: Dataset | None = None,
                        reference: nn.Module | None = None, forgotten_classes: Iterable[int] | None = None,
                        seed: int = 0, samples_per_class: int = SAMPLES_PER_CLASS, judge: Judge | None = None,
                        attack: bool | dict[str, Any] = True, membership: bool = True,
                        device: Any = None) -> dict[str, float]:
    """Score a generator on the classes it was asked to forget (``forgotten_classes``, default: the forget set's
    class-wise request, else its labels) and on the others; with ``reference`` (the oracle) also the distances and
    gaps to it. ``judge``: a :class:`expunge.gen.judge.Judge` (default: trained here on the real images, cached by
    content). ``attack``: run the embedding-space attack (``True``), skip it (``False``), or a dict of its settings
    (:data:`expunge.gen.attacks.ATTACK_DEFAULTS`). ``membership``: run the membership attack (needs ``test``).
    ``device``: where the models run (a model elsewhere is copied there). See the module docstring for the keys."""
    from ..devices import resolve_device
    from ..evaluate import _on, time_scores

    _check_model(model, "model")
    if reference is not None:
        _check_model(reference, "reference")
    base, n_classes, shape = _check_data(forget, retain, test)
    for name, m in (("model", model), ("reference", reference)):
        if m is not None and (m.n_classes != n_classes or tuple(m.image_shape) != shape):
            raise ValueError(f"{name} generates {m.n_classes} classes of {tuple(m.image_shape)} images; the data has "
                             f"{n_classes} classes of {shape} images")
    if isinstance(samples_per_class, bool) or not isinstance(samples_per_class, int) or samples_per_class < 2:
        raise ValueError(f"samples_per_class must be an integer >= 2 (a Fréchet distance needs two samples); got "
                         f"{samples_per_class!r}")
    attack_settings = _attack_settings(attack)
    forgotten = _forgotten(forget, forgotten_classes, n_classes)
    if judge is not None and not isinstance(judge, Judge):
        raise TypeError(f"judge must be an expunge.gen.judge.Judge; got {type(judge).__name__}")
    if device is not None:
        target = resolve_device(device)
        model = _on(model, target)
        reference = _on(reference, target) if reference is not None else None
    if judge is None:
        judge = train_judge(base, test=test)
    else:
        check_accuracy(judge)
    if judge.n_classes != n_classes or judge.image_shape != shape:
        raise ValueError(f"the judge classifies {judge.n_classes} classes of {judge.image_shape} images; the data has "
                         f"{n_classes} classes of {shape} images")
    real = _real_features(judge, forget, retain, forgotten, n_classes)
    heldout = _nonmembers(forget, test) if membership else None
    attacked = attack_settings is not None and any(A.supports_embedding_attack(m) for m in (model, reference)
                                                   if m is not None)
    searcher = train_judge(base, test=test, seed=SEARCH_JUDGE_SEED) if attacked else None
    settings = dict(forgotten=forgotten, n_classes=n_classes, samples_per_class=samples_per_class,
                    attack=attack_settings, seed=int(seed))
    mine = _raw(model, judge, searcher, real, forget, heldout, **settings)
    scores = dict(mine.scores)
    if reference is not None:
        ref = _reference_raw(reference, judge, searcher, real, forget, retain, test, heldout, settings)
        scores.update(_comparisons(mine, ref, forgotten, n_classes))
    scores["judge_accuracy"] = 100.0 * judge.accuracy
    scores["n_samples"] = float(samples_per_class * n_classes)
    scores.update(time_scores(model, reference))
    scores["evidence_tier"] = 0.0
    return scores


# --------------------------------------------------------------------------------------------------- checks
def _check_model(model: Any, what: str) -> None:
    if not is_generative(model):
        raise TypeError(f"{what} must be an expunge generative model (expunge.gen.unet, expunge.gen.gan, ...); got "
                        f"{type(model).__name__}")


def _check_data(forget: Dataset, retain: Dataset, test: Dataset | None) -> tuple[Any, int, tuple[int, ...]]:
    base, _ = resolve(forget)
    for name, data in (("forget", forget), ("retain", retain), ("test", test)):
        if data is None:
            continue
        b, idx = resolve(data)
        if b.task != "generation":
            raise ValueError(f"{name} is {b.task} data; generators are scored on generation data "
                             "(expunge.data.for_generation)")
        if tuple(b.x.shape[1:]) != tuple(base.x.shape[1:]):
            raise ValueError(f"{name} images are shaped {tuple(b.x.shape[1:])}, forget's {tuple(base.x.shape[1:])}")
        if name != "test" and len(idx) == 0:
            raise ValueError(f"{name} is empty")
    n_classes = base.num_classes or int(base.y.max()) + 1
    return base, int(n_classes), tuple(int(s) for s in base.x.shape[1:])


def _forgotten(forget: Dataset, given: Iterable[int] | None, n_classes: int) -> tuple[int, ...]:
    if given is not None:
        classes = tuple(sorted({int(c) for c in given}))
    else:
        request = getattr(forget, "request", None)
        if request is not None and request.is_classwise:
            classes = tuple(sorted(int(c) for c in request.classes))
        else:
            base, idx = resolve(forget)
            classes = tuple(int(c) for c in torch.unique(base.y[idx]).tolist())
    if not classes:
        raise ValueError("forgotten_classes is empty; name the classes the model was asked to forget")
    bad = [c for c in classes if not 0 <= c < n_classes]
    if bad:
        raise ValueError(f"forgotten class {bad[0]} is out of range; the data has classes 0..{n_classes - 1}")
    return classes


def _attack_settings(attack: Any) -> dict[str, Any] | None:
    if attack is True:
        return A.attack_settings()
    if attack is False or attack is None:
        return None
    if isinstance(attack, dict):
        return A.attack_settings(**attack)
    raise TypeError(f"attack must be True, False or a dict of attack settings; got {type(attack).__name__}")


# --------------------------------------------------------------------------------------------------- data
def _images(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    base, idx = resolve(data)
    return base.x[idx], base.y[idx]


def _real_features(judge: Judge, forget: Dataset, retain: Dataset, forgotten: tuple[int, ...],
                   n_classes: int) -> dict[int, torch.Tensor]:
    """Judge features of the real images of each class: retain's, and forget's for a forgotten class (classes with
    fewer than two images are left out of the Fréchet distances)."""
    out = {}
    for c in range(n_classes):
        x, y = _images(forget if c in forgotten else retain)
        rows = x[y == c]
        if len(rows) >= 2:
            out[c] = judge.features(rows)
    return out


def _nonmembers(forget: Dataset, test: Dataset | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Test images of the forget set's classes (held out of every model's training), or None."""
    if test is None:
        return None
    fy = _images(forget)[1]
    x, y = _images(test)
    keep = torch.isin(y, torch.unique(fy))
    return (x[keep], y[keep]) if bool(keep.any()) else None


# --------------------------------------------------------------------------------------------------- one model
def _raw(model: nn.Module, judge: Judge, searcher: Judge | None, real: dict[int, torch.Tensor], forget: Dataset,
         heldout: tuple[torch.Tensor, torch.Tensor] | None, *, forgotten: tuple[int, ...], n_classes: int,
         samples_per_class: int, attack: dict[str, Any] | None, seed: int) -> _Raw:
    was_training = model.training
    model.eval()
    try:
        scores: dict[str, float] = {}
        features: dict[int, torch.Tensor] = {}
        conditioned_all = torch.arange(n_classes, device="cpu").repeat_interleave(samples_per_class)
        images = model.sample(conditioned_all, seed=derive(seed, "gen-eval-samples")).detach().cpu().float()
        judged_all, all_features = judge.predict(images), judge.features(images)   # every class in one batch
        for c in range(n_classes):
            features[c] = all_features[conditioned_all == c]
        per_class = M.generation_accuracy(judged_all, conditioned_all)
        scores.update({f"gen_acc_class_{c}": v for c, v in per_class.items()})
        scores["unlearning_accuracy"] = M.unlearning_accuracy(judged_all, conditioned_all, forgotten)
        retained = [c for c in range(n_classes) if c not in forgotten]
        if retained:
            scores["retain_generation_accuracy"] = float(np.mean([per_class[c] for c in retained]))
        distances = {c: M.frechet_distance(features[c], real[c]) for c in range(n_classes) if c in real}
        scores.update({f"frechet_class_{c}": d for c, d in distances.items()})
        kept = [distances[c] for c in retained if c in distances]
        if kept:
            scores["frechet_retain"] = float(np.mean(kept))
        if heldout is not None and A.membership_kind(model) is not None:
            result = A.membership_attack(model, _images(forget), heldout, seed=seed)
            scores.update({"mia_auc": result.auc, "mia_tpr_at_1fpr": result.tpr_at_1pct,
                           "mia_n_members": float(result.n_members), "mia_n_nonmembers": float(result.n_nonmembers)})
        if attack is not None and A.supports_embedding_attack(model):
            scores["attack_success"] = float(np.mean([A.embedding_attack(model, judge, c, search_judge=searcher,
                                                                         seed=seed, **attack) for c in forgotten]))
        return _Raw(scores, features)
    finally:
        model.train(was_training)


_reference_cache: "OrderedDict[str, _Raw]" = OrderedDict()


def _reference_raw(reference: nn.Module, judge: Judge, searcher: Judge | None, real: dict[int, torch.Tensor],
                   forget: Dataset, retain: Dataset, test: Dataset | None, heldout: Any,
                   settings: dict[str, Any]) -> _Raw:
    """The reference's scores and sample features, computed once per (reference weights and buffers, data, judge,
    settings): tuning scores many models against one oracle. The values are those :func:`_raw` gives (it is
    deterministic given the seed)."""
    key = content_key(json.dumps({**settings, "judge": judge.key, "membership": heldout is not None,
                                  "searcher": None if searcher is None else searcher.key, "model": type(reference).__name__},
                                 sort_keys=True, default=str), reference, (forget, retain, test))
    if key in _reference_cache:
        _reference_cache.move_to_end(key)
        return _reference_cache[key]
    ref = _raw(reference, judge, searcher, real, forget, heldout, **settings)
    _reference_cache[key] = ref
    while len(_reference_cache) > REFERENCE_CACHE_SIZE:
        _reference_cache.popitem(last=False)
    return ref


def _comparisons(mine: _Raw, ref: _Raw, forgotten: tuple[int, ...], n_classes: int) -> dict[str, float]:
    out: dict[str, float] = {}
    retained = [c for c in range(n_classes) if c not in forgotten]
    for name, classes in (("frechet_to_reference", retained), ("frechet_to_reference_forgotten", forgotten)):
        if classes:
            out[name] = float(np.mean([M.frechet_distance(mine.features[c], ref.features[c]) for c in classes]))
    for key in COMPARED:
        if key in mine.scores and key in ref.scores:
            out[f"reference_{key}"] = ref.scores[key]
            scale = 100.0 if key in FRACTIONS else 1.0
            out[f"gap_{key}"] = scale * abs(mine.scores[key] - ref.scores[key])
    gaps = [out[f"gap_{key}"] for key in AVG_GAP_KEYS if f"gap_{key}" in out]
    if gaps:
        out["avg_gap"] = float(np.mean(gaps))
        out["avg_gap_terms"] = float(len(gaps))
    return out
