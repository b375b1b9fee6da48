"""The population membership-inference attack used across the unlearning literature (tier-0 evidence).

MIA-efficacy (Jia et al., NeurIPS 2023; OPTML-Group ``evaluation/SVC_MIA.py``): an SVC (C=3, gamma="auto", RBF)
is fitted on one score per example, members = retain examples, as many as the test set, non-members = the test set;
it then labels each forget example. MIA-efficacy = % of forget examples predicted non-member. Higher means more
forgetting; the target is the oracle's value, not 100.

What differs from the reference, and why (the reference's number flips between 0 and 100 across seeds when the
forget examples are all confidently right, as on worst-case forget sets: every score sits at p(y|x) ≈ 1, where
members and non-members overlap, and the SVC's label for that saturated region is a coin flip):

- **Feature.** Classification uses the logit-scaled confidence φ = logit_y − logsumexp_{j≠y} logit_j
  (:func:`expunge.metrics.logit_scaled_confidence`, the LiRA feature) instead of the raw p(y|x): it does not
  saturate at 1, so confident examples stay ordered. Regression uses the per-example L1 loss (Tarun et al., "Deep
  Regression Unlearning", ICML 2023). The feature is standardised on each fit's training set (gamma="auto" is
  scale-dependent).
- **Members.** The reference takes the first |test| rows of retain (so the sample depends on the data's order,
  e.g. on how classes are sorted). Here each draw takes a seeded random sample of retain of that size; with the
  same ``seed`` the draws, and the result, are identical (the SVC itself is deterministic).
- **Repeated draws.** The attack is fitted :data:`REPEATS` times on different member samples (non-members are the
  whole test set up to :data:`MAX_PER_SIDE`); ``mia_efficacy`` is the mean over draws and ``mia_efficacy_std``
  their standard deviation. When retain is no larger than the test set every draw is the same.
- **Ties.** A forget example on the decision boundary (decision value exactly 0) counts one half.
- **Uncertainty and instability.** ``mia_efficacy_std`` is the spread that the member sample alone causes (on
  small test sets it is often 5-20 points: read differences in MIA against it). ``mia_unstable`` = 1 when the
  number is a coin flip: the draws span at least :data:`UNSTABLE_RANGE` points (one draw calls most of the forget
  set members, another non-members), or in at least half of the draws the SVC puts all of its own training points
  in one class (it cannot tell members from non-members, so its label for the forget set says nothing). An
  unstable MIA is left out of the Avg. Gap (see :mod:`expunge.evaluate`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.svm import SVC

# the SVC costs O(n^2); beyond this many examples per side both sides are subsampled (seeded)
MAX_PER_SIDE = 2000
REPEATS = 5             # member samples the attack is fitted on
UNSTABLE_RANGE = 50.0   # percentage points between the lowest and highest draw from which the MIA is a coin flip


@dataclass(frozen=True)
class MIAResult:
    """The SVC MIA over repeated member draws: ``efficacy`` (mean, %), ``std`` across draws, each draw's value,
    and ``degenerate`` (the SVC put all of its own training points in one class in at least half of the draws)."""

    efficacy: float
    std: float
    draws: tuple[float, ...]
    degenerate: bool

    @property
    def unstable(self) -> bool:
        """Whether the number is a coin flip rather than a measurement (see the module docstring)."""
        return bool(self.degenerate or (max(self.draws) - min(self.draws) >= UNSTABLE_RANGE if self.draws else False))

    def scores(self) -> dict[str, float]:
        """``mia_efficacy``, ``mia_efficacy_std`` and ``mia_unstable`` (1.0 or 0.0), as evaluate reports them."""
        return {"mia_efficacy": self.efficacy, "mia_efficacy_std": self.std,
                "mia_unstable": float(self.unstable)}


def svc_mia(forget_scores, member_scores, nonmember_scores, *, seed: int = 0, repeats: int = REPEATS) -> MIAResult:
    """The SVC MIA on one score per example (higher or lower, any scale), fitted ``repeats`` times."""
    forget = _array(forget_scores)
    members, nonmembers = _array(member_scores), _array(nonmember_scores)
    if len(members) == 0 or len(nonmembers) == 0 or len(forget) == 0:
        return MIAResult(float("nan"), float("nan"), (), False)
    draws, degenerate = [], 0
    for r in range(repeats):
        rng = np.random.default_rng([seed, r])
        non = nonmembers if len(nonmembers) <= MAX_PER_SIDE else rng.choice(nonmembers, MAX_PER_SIDE, replace=False)
        mem = members if len(members) <= len(non) else rng.choice(members, len(non), replace=False)
        x = np.concatenate([mem, non])
        y = np.concatenate([np.ones(len(mem)), np.zeros(len(non))])
        mean, std = x.mean(), x.std()
        scale = lambda v: ((v - mean) / (std if std > 0 else 1.0))[:, None]
        clf = SVC(C=3, gamma="auto", kernel="rbf").fit(scale(x), y)
        degenerate += len(np.unique(clf.predict(scale(x)))) < 2
        decision = clf.decision_function(scale(forget))      # > 0: member (class 1)
        draws.append(float(100.0 * ((decision < 0).mean() + 0.5 * (decision == 0).mean())))
    values = np.array(draws)
    return MIAResult(float(values.mean()), float(values.std()), tuple(draws), degenerate * 2 >= repeats)


def svc_mia_efficacy(forget_scores, member_scores, nonmember_scores, *, seed: int = 0) -> float:
    """% of forget examples that an SVC trained on members vs non-members predicts to be non-members (the mean of
    :func:`svc_mia`'s draws)."""
    return svc_mia(forget_scores, member_scores, nonmember_scores, seed=seed).efficacy


def _array(scores) -> np.ndarray:
    a = scores.double().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores, dtype=np.float64)
    a = a.reshape(-1)
    return np.clip(np.nan_to_num(a, nan=0.0, posinf=1e6, neginf=-1e6), -1e6, 1e6)
