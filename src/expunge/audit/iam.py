"""IAM: sample-level unlearning completeness from one shadow model, cheap enough to run after every unlearning run.

Paper: Cheng-Long Wang, Qi Li, Zihang Xiang, Yinzhi Cao, Di Wang, "Towards Lifecycle Unlearning Commitment
Management: Measuring Sample-level Unlearning Completeness", USENIX Security 2025 (Interpolated Approximate
Measurement, IAM). Reference repository: Happy2Git/Unlearning_Inference_IAM (``ip_ppl`` in
``mia_llms_benchmark/attacks/iam_llm_score.py``).

The idea: an example's membership signal under a model lies somewhere between what a model that never saw it gives
(*generalisation*) and what a model that trained on it gives (*fitting*). IAM places the signal of the model under
test on the straight path between the two and reads how far along it lies; an example that was truly unlearned
sits at the generalisation end, one that was kept at the fitting end. With one shadow model the two ends are
cheap: the shadow is trained, with the model's own recorded recipe and a fresh initialisation, on a seeded random
half of the retain set (``shadow_share`` = :data:`SHADOW_SHARE`), so

- the **generalisation end** of each forget example is the shadow's own signal on it (the shadow never saw any
  forget example), and
- the **fitting end** is the shadow's mean signal over the half it trained on (the reference code's ``fit_value``:
  a population-level fitting level, since one shadow fits each example at most once).

Per example the signal is the bounded Gumbel map of the true-label probability p, g = −log(ε₁ − log(p + ε₂)),
increasing in p, bounded above by −log ε₁ (the paper's map; ε₁ = 0.1, ε₂ = 1e-5 as in the reference code).
Interpolation points c(m) = g_gen + m·(g_fit − g_gen), m ∈ [0, 1], each smoothed by a Gumbel distribution
(moment-matched: mean c(m), standard deviation σ(m), as in the reference code) with σ(m) the spread of c(m)
across the examples scored together (the reference's choice; the forget set and the test set each have their own).
The example's **membership** is the mean over m of the Gumbel CDF of its signal, F(g | c(m), σ(m)): the share of
the path its signal has passed, 0 at the generalisation end, 1 beyond the fitting end (noise-free it is exactly the
clipped linear placement (g − g_gen)/(g_fit − g_gen)).
**Completeness** = 1 − membership, in [0, 1]: 1 looks as unseen as under retraining, 0 as fitted as under
training.

Outputs (:meth:`IamResult.summary`): ``iam_completeness_mean`` over the measurable forget examples,
``iam_incomplete_share`` (share of them with completeness below :data:`INCOMPLETE_BELOW` = 0.5: placed nearer the
fitting end than the generalisation end), ``iam_n_measured`` and ``iam_n_forget``; with test examples (seen by
neither the model nor the shadow) ``iam_test_completeness_mean``: what unseen examples score under the same
model and shadow, the value to read the forget set's mean against (it is not 1: the shadow, trained on half the
retain set, generalises less well than a model trained on all of it, and the smoothing places even a signal at the
generalisation end part of the way along the path), and ``iam_relative_completeness`` = min(1, forget mean / test
mean) (expunge's addition): 1 when the forget examples look at least as unseen as examples the model never saw.
On 600 digits with 20% flipped labels and an MLP (tests/audit/test_iam.py) the oracle scores a forget mean of about
0.66 against a test mean of about 0.57 (relative 1), the original, which memorised its forget set, about 0.24
(relative about 0.45, 97% of its measured forget examples judged incomplete).

Measurable examples: an example whose generalisation end is not below the fitting end by at least
:data:`MIN_GAP` (in Gumbel units) has no path to place a signal on (the shadow already predicts it as confidently as
it fits its own training data): nothing distinguishes unlearned from kept there, so it is counted in
``iam_n_forget`` but not in the means (``completeness`` is NaN for it).

What it shows: a per-example test of one model against one shadow model that never saw the examples: evidence of
the tier-1 kind (examples that still look fitted), not tier-1 strength: one shadow and a population fitting level
cannot give the calibrated false-positive rates of LiRA with many oracles, so ``expunge.evaluate(...,
evidence="iam")`` does not raise ``evidence_tier``. Its cost is one training on half the retain set.

One shadow for many models: the shadow depends only on the request (forget and retain), the architecture, the
recipe and the seed, so :func:`train_shadow` trains it once and ``iam(..., shadow=...)`` scores any number of models
of that architecture against it (an experiment's original, oracle and every method: ``scoring: {evidence: iam}``
in its config; an audit's audited model). Scored through a shadow trained from the original, a model gets the same
numbers as ``iam(model, ...)`` with the same seed whenever its provenance carries the original's recipe (a
method's result does) and no sparsity mask of its own (a shadow trained from a sparse model keeps its mask), since
the shadow's initialisation and data come from the seed alone.
In an audit the 2K oracles (oracles and baseline oracles, each independent of the shadow, which depends on no
model's weights) are scored against the same shadow by forward passes (:func:`iam_of_members`): their spread is the
band (:func:`oracle_band`: a 95% prediction interval, the smallest to largest up to 78 oracles) that the audited
model's relative completeness is judged against, since one oracle's value varies a lot from seed to seed (on 300
digits with 30 forget examples four oracles scored 0.38 to 0.63 against one shadow).
Classification only (the signal is the true-label probability).

Defaults: ε₁ = 0.1, ε₂ = 1e-5 and :data:`STEPS` = 1000 interpolation points (reference code); the shadow on half
the data (the paper); :data:`MIN_GAP` = 0.05 and :data:`INCOMPLETE_BELOW` = 0.5 (expunge's choices: a gap well
under the spread of fitted signals, and the midpoint of the path). There is no tuning grid.

Deviations from the paper and the reference code:
- the shadow is trained for the request, on half of its retain set, so that every forget example is OUT for it by
  construction (the paper trains a shadow once on half of a population and reads each queried example's in/out
  status); this costs one training per forget request (shared by every model scored on it: :func:`train_shadow`)
  instead of none after the first;
- the signal is the map of p itself, increasing with fitting (the reference's language-model code maps 1 − p from
  the loss, decreasing with fitting); the reading is the same with the direction turned;
- uniform weights over the interpolation path (the reference weights the CDFs towards the generalisation end, and
  its weights ``alphas[1:]`` meet the CDFs of ``alphas[:-1]``, one step apart): uniform weights make the noise-free
  score exactly the linear placement, so 0 and 1 mean the two ends;
- the path is integrated by the midpoint rule over :data:`STEPS` points (the reference: 1000 points including the
  ends, one dropped);
- examples without a path (see above) are left out of the means instead of scored near 0.5.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from ..data.datasets import resolve, targets
from ..metrics import predict
from ..provenance import provenance
from ..seeds import derive

EPS1 = 0.1               # bound of the Gumbel map (reference code)
EPS2 = 1e-5              # floor under p (reference code)
STEPS = 1000             # interpolation points (reference code)
MIN_GAP = 0.05           # fitting end − generalisation end below which an example has no path to place it on
SHADOW_SHARE = 0.5       # share of the retain set the shadow trains on (the paper: half the data)
INCOMPLETE_BELOW = 0.5   # completeness below which a forget example is judged incomplete
BAND_KEYS = ("completeness_mean", "test_completeness_mean", "relative_completeness", "incomplete_share",
             "test_incomplete_share")   # the numbers an audit gives the oracles' band of
JUDGED_KEY = "relative_completeness"    # the number an audit judges the audited model on against that band
CLASSIFIERS_ONLY = "IAM scores classifiers (it reads the true-label probability); the data is {task} data"
EULER_GAMMA = 0.5772156649015329


def gumbel_signal(p: Any, eps1: float = EPS1, eps2: float = EPS2) -> np.ndarray:
    """The paper's bounded Gumbel map of a probability: −log(ε₁ − log(p + ε₂)), increasing in p."""
    p = np.asarray(p, float)
    return -np.log(eps1 - np.log(p + eps2))


def true_label_probability(model: nn.Module, data: Dataset) -> np.ndarray:
    """p_y of every example of ``data`` under ``model`` (softmax of its logits)."""
    logits = predict(model, data).double()
    y = targets(data).long()
    return torch.softmax(logits, -1).gather(1, y[:, None]).squeeze(1).numpy()


def gumbel_cdf(x: Any, mean: Any, std: Any) -> np.ndarray:
    """CDF at ``x`` of the Gumbel (maximum) distribution with the given mean and standard deviation (moments
    matched as in the reference code: β = √6·σ/π, μ = mean − γβ); a zero ``std`` gives the step at the mean
    (1 above, 1/2 at, 0 below)."""
    x, mean, std = np.broadcast_arrays(*(np.asarray(a, float) for a in (x, mean, std)))
    out = np.where(x > mean, 1.0, np.where(x < mean, 0.0, 0.5))
    smooth = std > 0
    beta = np.sqrt(6.0) * std[smooth] / math.pi
    mu = mean[smooth] - EULER_GAMMA * beta
    out[smooth] = np.exp(-np.exp(np.minimum(-(x[smooth] - mu) / beta, 700.0)))
    return out


def interpolated_membership(signal: Any, generalisation: Any, fit: Any, *, steps: int = STEPS,
                            std: Any = None) -> np.ndarray:
    """Per example: the mean over m ∈ [0, 1] (midpoint rule, ``steps`` points) of the Gumbel CDF of ``signal`` at
    the interpolation point c(m) = generalisation + m·(fit − generalisation).

    ``std``: the Gumbel's standard deviation at each point, ``[steps, N]``, ``[steps, 1]`` or a scalar; default the
    spread of c(m) across the examples (the reference code's choice). ``std=0`` gives the noise-free placement
    clip((signal − generalisation) / (fit − generalisation), 0, 1) up to the grid's resolution."""
    signal, generalisation, fit = np.broadcast_arrays(*(np.atleast_1d(np.asarray(a, float))
                                                        for a in (signal, generalisation, fit)))
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}")
    m = (np.arange(steps) + 0.5)[:, None] / steps                      # [steps, 1]
    points = generalisation[None, :] + m * (fit - generalisation)[None, :]   # [steps, N]
    if std is None:
        std = points.std(axis=1, keepdims=True)
    return gumbel_cdf(signal[None, :], points, std).mean(axis=0)


@dataclass
class IamResult:
    """Per-example IAM completeness of one model's forget examples (NaN where not measurable) and, with test
    examples, theirs; the shadow's fitting level and the generalisation end of each forget example."""

    completeness: np.ndarray
    fit_level: float
    generalisation: np.ndarray
    test_completeness: np.ndarray | None = None

    @property
    def measured(self) -> np.ndarray:
        return ~np.isnan(self.completeness)

    def summary(self) -> dict[str, float]:
        c = self.completeness[self.measured]
        nan = float("nan")
        out = {"iam_completeness_mean": float(c.mean()) if len(c) else nan,
               "iam_incomplete_share": float((c < INCOMPLETE_BELOW).mean()) if len(c) else nan,
               "iam_n_measured": float(len(c)), "iam_n_forget": float(len(self.completeness))}
        if self.test_completeness is not None:
            t = self.test_completeness[~np.isnan(self.test_completeness)]
            out["iam_test_completeness_mean"] = float(t.mean()) if len(t) else nan
            out["iam_test_incomplete_share"] = float((t < INCOMPLETE_BELOW).mean()) if len(t) else nan
            test_mean = out["iam_test_completeness_mean"]
            ratio = out["iam_completeness_mean"] / test_mean if test_mean > 0 else nan   # NaN > 0 is False
            out["iam_relative_completeness"] = float(min(1.0, ratio)) if math.isfinite(ratio) else nan
        return out


def completeness(model_p: Any, shadow_p: Any, shadow_fit_p: Any, *, steps: int = STEPS,
                 min_gap: float = MIN_GAP) -> tuple[np.ndarray, float, np.ndarray]:
    """IAM completeness from probabilities: ``model_p`` (the model under test) and ``shadow_p`` (the shadow, which
    never saw them) on the same examples, ``shadow_fit_p`` the shadow's on its own training examples.
    Returns (completeness with NaN where not measurable, the fitting level, the generalisation ends)."""
    g_model, g_gen = gumbel_signal(model_p), gumbel_signal(shadow_p)
    fit = float(np.mean(gumbel_signal(shadow_fit_p)))
    measurable = fit - g_gen >= min_gap
    out = np.full(len(g_model), np.nan)
    if measurable.any():
        out[measurable] = 1.0 - interpolated_membership(g_model[measurable], g_gen[measurable], fit, steps=steps)
    return out, fit, g_gen


@dataclass
class Shadow:
    """The shadow model of one forget request: ``model`` (trained on a seeded ``share`` of retain, never on a forget
    example), its true-label probabilities ``fit_p`` on that part, and the request it was trained for (the
    positions of the forget and retain examples in their base data), checked whenever it scores a model."""

    model: nn.Module
    fit_p: np.ndarray
    forget_index: np.ndarray = field(repr=False)
    retain_index: np.ndarray = field(repr=False)
    base: Dataset = field(repr=False)
    seed: int = 0
    seconds: float = 0.0

    def check_request(self, forget: Dataset, retain: Dataset) -> None:
        """Refuse, in one line, a forget or retain set other than the ones the shadow was trained for (other
        examples, or the same positions of another data object)."""
        for name, d, want in (("forget", forget, self.forget_index), ("retain", retain, self.retain_index)):
            base, got = resolve(d)
            got = got.numpy()
            if base is not self.base:
                raise ValueError(f"the IAM shadow was trained for a {name} set of another data object than this one "
                                 f"(a different dataset object, whatever its values); train one for this request "
                                 f"with train_shadow")
            if got.shape != want.shape or not np.array_equal(got, want):
                which = (f"{len(want)} examples, this one {len(got)}" if len(got) != len(want) else
                         f"the same size, {len(want)} examples, but other ones")
                raise ValueError(f"the IAM shadow was trained for another {name} set ({which}); train one for this "
                                 f"request with train_shadow")


def train_shadow(model: nn.Module, *, forget: Dataset, retain: Dataset, seed: int = 0,
                 shadow_share: float = SHADOW_SHARE) -> Shadow:
    """The shadow of this request, trained once with ``model``'s architecture and recorded recipe (one training
    on ``shadow_share`` of ``retain``); ``iam(..., shadow=...)`` then scores any model of that architecture
    against it."""
    check_iam(model, forget=forget, retain=retain, shadow_share=shadow_share)
    start = time.perf_counter()
    shadow, half = shadow_model(model, retain, forget, seed, shadow_share)
    (base, forget_index), retain_index = resolve(forget), resolve(retain)[1]
    return Shadow(shadow, true_label_probability(shadow, half), forget_index.numpy(), retain_index.numpy(), base,
                  seed, time.perf_counter() - start)


def shadow_model(model: nn.Module, retain: Dataset, forget: Dataset, seed: int, share: float = SHADOW_SHARE
                 ) -> tuple[nn.Module, Dataset]:
    """The shadow: ``model``'s architecture retrained from a fresh initialisation, with its recorded recipe, on a
    seeded random ``share`` of ``retain`` (through the ``retrain`` method); returns it and the part it trained on."""
    from ..api import unlearn

    n = len(retain)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(derive(seed, "iam", "shadow-half")))
    half = Subset(retain, sorted(order[: max(1, int(round(share * n)))].tolist()))
    shadow = unlearn(model, forget=forget, retain=half, method="retrain", seed=derive(seed, "iam", "shadow"))
    return shadow, half


def check_iam_request(forget: Dataset, retain: Dataset) -> None:
    """Refuse, in one line, a request IAM cannot score: other data than classification, an empty forget set, a
    retain set too small to train a shadow on part of it."""
    task = resolve(forget)[0].task
    if task != "classification":
        raise ValueError(CLASSIFIERS_ONLY.format(task=task))
    if len(forget) == 0:
        raise ValueError("IAM needs at least one forget example; the forget set is empty")
    if len(retain) < 2:
        raise ValueError(f"IAM trains its shadow model on part of retain, which needs at least 2 examples; "
                         f"got {len(retain)}")


def check_iam(model: nn.Module, *, forget: Dataset, retain: Dataset, steps: int = STEPS, min_gap: float = MIN_GAP,
              shadow_share: float = SHADOW_SHARE, trains_shadow: bool = True) -> None:
    """Refuse, in one line and before any work, what :func:`iam` cannot score (``trains_shadow``: the model's
    recorded recipe is needed, to train the shadow from it)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module; got {type(model).__name__}")
    check_iam_request(forget, retain)
    if trains_shadow and provenance(model).recipe is None:
        raise ValueError("IAM trains its shadow model with the model's recorded recipe, and this model has none; "
                         "train the original with expunge.train")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}")
    if isinstance(shadow_share, bool) or not isinstance(shadow_share, (int, float)) or not 0 < shadow_share <= 1:
        raise ValueError(f"shadow_share must be a number in (0, 1] (the share of retain the shadow trains on); "
                         f"got {shadow_share!r}")
    if isinstance(min_gap, bool) or not isinstance(min_gap, (int, float)) or not min_gap >= 0:
        raise ValueError(f"min_gap must be a number >= 0; got {min_gap!r}")


def iam(model: nn.Module, *, forget: Dataset, retain: Dataset, test: Dataset | None = None, seed: int = 0,
        steps: int = STEPS, min_gap: float = MIN_GAP, shadow_share: float = SHADOW_SHARE,
        shadow: Shadow | None = None) -> IamResult:
    """IAM completeness of ``model``'s forget examples against one shadow model trained on half of ``retain``
    (see the module docstring); ``test`` adds the same score of unseen examples, the value to read it against.
    ``shadow``: one trained for this request by :func:`train_shadow` (shared between models; ``seed`` and
    ``shadow_share`` are then its own), else one is trained here."""
    if shadow is not None and not isinstance(shadow, Shadow):
        raise TypeError(f"shadow must be an expunge.audit.iam.Shadow (from train_shadow) or None; got "
                        f"{type(shadow).__name__}")
    check_iam(model, forget=forget, retain=retain, steps=steps, min_gap=min_gap, shadow_share=shadow_share,
              trains_shadow=shadow is None)
    if shadow is None:
        shadow = train_shadow(model, forget=forget, retain=retain, seed=seed, shadow_share=shadow_share)
    else:
        shadow.check_request(forget, retain)
    net, with_test = shadow.model, test is not None and len(test) > 0
    return _placed(true_label_probability(model, forget), true_label_probability(net, forget), shadow.fit_p,
                   true_label_probability(model, test) if with_test else None,
                   true_label_probability(net, test) if with_test else None, steps=steps, min_gap=min_gap)


def _placed(forget_p: np.ndarray, shadow_forget_p: np.ndarray, fit_p: np.ndarray, test_p: np.ndarray | None,
            shadow_test_p: np.ndarray | None, *, steps: int, min_gap: float) -> IamResult:
    """IAM from the true-label probabilities of the model under test and of the shadow (forget, optionally test)."""
    result, fit, gen = completeness(forget_p, shadow_forget_p, fit_p, steps=steps, min_gap=min_gap)
    test_c = None
    if test_p is not None:
        test_c = completeness(test_p, shadow_test_p, fit_p, steps=steps, min_gap=min_gap)[0]
    return IamResult(result, fit, gen, test_c)


def ensemble_true_label_probability(ensemble: nn.Module, data: Dataset, chunk: int = 4096) -> np.ndarray:
    """p_y ``[K, N]`` of every example of ``data`` under every member of a batched ensemble
    (:class:`expunge.ensemble.Ensemble`): forward passes only, ``chunk`` examples at a time."""
    y = targets(data).long()
    parts = []
    for lo in range(0, len(data), chunk):
        part = range(lo, min(lo + chunk, len(data)))
        logits = ensemble.predict(Subset(data, part)).double()                  # [K, n, C]
        rows = y[lo:part.stop][None, :, None].expand(len(logits), -1, 1)
        parts.append(torch.softmax(logits, -1).gather(2, rows).squeeze(2).numpy())
    return np.concatenate(parts, axis=1) if parts else np.empty((len(ensemble), 0))


def iam_of_members(ensemble: nn.Module, *, forget: Dataset, retain: Dataset, shadow: Shadow,
                   test: Dataset | None = None, steps: int = STEPS, min_gap: float = MIN_GAP) -> list[IamResult]:
    """IAM of every member of a batched ensemble (:class:`expunge.ensemble.Ensemble`, e.g. an audit's K oracles)
    against one shadow of this request: forward passes only, no training; member k gets the numbers
    ``iam(ensemble.member(k), ..., shadow=shadow)`` gives, up to the rounding of the batched forward pass."""
    if not isinstance(shadow, Shadow):
        raise TypeError(f"shadow must be an expunge.audit.iam.Shadow (from train_shadow); got {type(shadow).__name__}")
    check_iam_request(forget, retain)
    shadow.check_request(forget, retain)
    net, with_test = shadow.model, test is not None and len(test) > 0
    members_f = ensemble_true_label_probability(ensemble, forget)
    members_t = ensemble_true_label_probability(ensemble, test) if with_test else None
    shadow_f = true_label_probability(net, forget)
    shadow_t = true_label_probability(net, test) if with_test else None
    return [_placed(members_f[k], shadow_f, shadow.fit_p, members_t[k] if with_test else None, shadow_t,
                    steps=steps, min_gap=min_gap) for k in range(len(members_f))]


def oracle_band(audited: dict[str, float], oracles: list[dict[str, float]]) -> dict[str, float]:
    """The oracles' band of each IAM number in :data:`BAND_KEYS` (``oracles``: one :meth:`IamResult.summary` per
    oracle, all against one shadow) and the ``audited`` model's summary judged against it.

    The band is a 95% prediction interval for one more oracle from the oracles' order statistics, the
    ⌈0.975 (n + 1)⌉-th smallest of n as its upper end (⌊0.025 (n + 1)⌋-th as its lower, each clamped to the
    smallest and largest), as the audited model's retain-leakage band (:mod:`.leakage`): the smallest to largest
    value up to n = 78, which a further oracle falls outside with probability 2 / (n + 1) (more than 5% below
    n = 39). Returns ``iam_oracle_<key>_low`` and ``_high``,
    ``iam_oracle_band_models`` (n) and ``iam_inside_oracle_band``: 1.0 when the audited model's
    :data:`JUDGED_KEY` lies inside its band (as complete as retraining, within what retraining varies by), 0.0 when
    outside, NaN when either is not a number."""
    from .leakage import _prediction_band

    out: dict[str, float] = {"iam_oracle_band_models": float(len(oracles))}
    for key in BAND_KEYS:
        values = np.array([o.get(f"iam_{key}", math.nan) for o in oracles], float)
        out[f"iam_oracle_{key}_low"], out[f"iam_oracle_{key}_high"] = _prediction_band(values)
    value = audited.get(f"iam_{JUDGED_KEY}", math.nan)
    low, high = out[f"iam_oracle_{JUDGED_KEY}_low"], out[f"iam_oracle_{JUDGED_KEY}_high"]
    known = all(math.isfinite(v) for v in (value, low, high))
    out["iam_inside_oracle_band"] = float(low <= value <= high) if known else math.nan
    return out


def iam_with_oracle(model: nn.Module, oracle: nn.Module, *, forget: Dataset, retain: Dataset, test: Dataset,
                    seed: int = 0, band: tuple[nn.Module, ...] = ()) -> dict[str, float]:
    """IAM of ``model`` beside that of ``oracle`` (a model retrained without the forget set: what retraining
    scores, the target), both against one shadow trained from ``oracle``'s architecture and recipe: the audited
    model's ``iam_*`` numbers and the oracle's as ``iam_oracle_*`` (how an audit reports it). ``band``: batched
    ensembles of further oracles (an audit's oracles and baseline oracles), every member scored against the same
    shadow by forward passes (:func:`iam_of_members`), whose spread gives the band the model is judged against
    (:func:`oracle_band`)."""
    shadow = train_shadow(oracle, forget=forget, retain=retain, seed=seed)
    mine = iam(model, forget=forget, retain=retain, test=test, shadow=shadow).summary()
    target = iam(oracle, forget=forget, retain=retain, test=test, shadow=shadow).summary()
    out = {**mine, **{f"iam_oracle_{k[len('iam_'):]}": v for k, v in target.items()}}
    if band:
        oracles = [r.summary() for ensemble in band
                   for r in iam_of_members(ensemble, forget=forget, retain=retain, test=test, shadow=shadow)]
        out.update(oracle_band(mine, oracles))
    return out
