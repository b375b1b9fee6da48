"""Retain leakage: does unlearning expose the membership of the data it kept?

Unlearning can make the *retained* examples easier to tell from unseen ones than they are for a model retrained
without the forget set (Fu et al., "Revisiting Privacy Leakage in Machine Unlearning: Membership Inference Beyond the
Forgotten Set", Euro S&P 2026, TC-UMIA; reference JeffffffFu/TC-UMIA). The audit measures it with a population
membership attack on retain examples (members) against test examples (non-members): a threshold on the logit-scaled
confidence φ (higher = member; the order of the loss attack of Yeom et al.), one threshold for all models of a
group, so that the K models' scores are pooled (K × n examples each side, which resolves low FPRs). Reported for
the K unlearned models and for the K oracles: AUC and TPR at 1% and 0.1% FPR (NaN where the pooled test examples
are too few: under 1 / FPR), their difference (unlearned − oracles), and the **oracle-vs-oracle band**: the
central 95% of the same difference between two disjoint groups of K drawn at random from the 2K oracles (oracles
and baseline oracles; :data:`PERMUTATIONS` draws), which is how the difference falls when the unlearned models are
in truth oracles. A difference above the band's upper end is leakage. The same for the one audited model: its
attack numbers, their difference from the mean single oracle, and the band of single oracles around that mean: a
95% prediction interval from the 2K single oracles' order statistics (the ⌈0.975 (2K + 1)⌉-th smallest as the
upper end, the largest when 2K < 39, where an oracle exceeds it with probability 1 / (2K + 1)).

Six rows are flagged (three numbers, for the K unlearned models and for the audited model), each on its own band,
with no correction for multiple testing: under exact retraining each row lies above its band's upper end about 1
time in 40 (1 in 2K + 1 for the audited model's rows below K = 20), so a flag somewhere among the six is expected in
up to about 1 audit in 7 (the union bound 6 / 40; less in practice, as the three numbers move together). The bands
are left at 95% each, rather than widened by a Bonferroni factor, because the rows are strongly correlated (the
correction would be far too wide) and :data:`PERMUTATIONS` draws cannot place a 99.6% quantile reliably; the reports
and README say how to read a single flag.

Deviation from TC-UMIA: its attack is a three-class (forget / retain / unseen) classifier on the predictions of
the model before and after unlearning; here the attack is the one-sided retain-vs-unseen question asked of the
unlearned model alone and of the oracles, so that the oracles give its target value and its noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..metrics.roc import LOW_FPRS, roc_numbers

PERMUTATIONS = 200
BAND = 0.95
NUMBERS = ("auc", "tpr_at_1pct", "tpr_at_0_1pct")


def attack_numbers(member_phi: np.ndarray, nonmember_phi: np.ndarray) -> dict[str, float]:
    """AUC and TPR at 1% / 0.1% FPR of the pooled threshold attack (higher φ = member) over all given models."""
    auc, tprs = roc_numbers(np.ravel(member_phi), np.ravel(nonmember_phi), LOW_FPRS)
    return dict(zip(NUMBERS, [auc, *tprs]))


@dataclass
class RetainLeakage:
    """The retain-vs-test attack on the unlearned models, the oracles and the audited model, with the oracle bands."""

    unlearned: dict[str, float]
    oracle: dict[str, float]
    baseline: dict[str, float]
    difference: dict[str, float]                      # unlearned − oracle
    band: dict[str, tuple[float, float]]              # oracle-vs-oracle band of that difference
    audited: dict[str, float]
    audited_difference: dict[str, float]              # audited − mean single oracle
    audited_band: dict[str, tuple[float, float]]
    n_members: int
    n_nonmembers: int
    n_models: int
    permutations: int = PERMUTATIONS
    single_oracles: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    def exceeds(self, key: str, audited: bool = False) -> bool:
        d = (self.audited_difference if audited else self.difference)[key]
        hi = (self.audited_band if audited else self.band)[key][1]
        return bool(np.isfinite(d) and np.isfinite(hi) and d > hi)

    def summary(self, prefix: str = "retain_leakage") -> dict[str, float]:
        """Flat floats (``_exceeds`` keys 1.0 or 0.0); numbers the sample cannot resolve are left out."""
        out: dict[str, float] = {}
        for key in NUMBERS:
            out[f"{prefix}_{key}"] = self.unlearned[key]
            out[f"{prefix}_oracle_{key}"] = self.oracle[key]
            out[f"{prefix}_baseline_{key}"] = self.baseline[key]
            out[f"{prefix}_{key}_difference"] = self.difference[key]
            out[f"{prefix}_{key}_band_low"], out[f"{prefix}_{key}_band_high"] = self.band[key]
            out[f"{prefix}_{key}_exceeds"] = float(self.exceeds(key))
            out[f"{prefix}_audited_{key}"] = self.audited[key]
            out[f"{prefix}_audited_{key}_difference"] = self.audited_difference[key]
            out[f"{prefix}_audited_{key}_band_low"], out[f"{prefix}_audited_{key}_band_high"] = \
                self.audited_band[key]
            out[f"{prefix}_audited_{key}_exceeds"] = float(self.exceeds(key, audited=True))
        out[f"{prefix}_n_members"] = float(self.n_members)
        out[f"{prefix}_n_nonmembers"] = float(self.n_nonmembers)
        return {k: v for k, v in out.items() if np.isfinite(v)}     # a TPR the sample cannot resolve is left out

    def to_dict(self) -> dict[str, Any]:
        return {"attack": "pooled threshold on φ, retain (members) vs test (non-members)",
                "unlearned": self.unlearned, "oracle": self.oracle, "baseline": self.baseline,
                "difference": self.difference, "band": {k: list(v) for k, v in self.band.items()},
                "exceeds": {k: self.exceeds(k) for k in NUMBERS}, "audited": self.audited,
                "audited_difference": self.audited_difference,
                "audited_band": {k: list(v) for k, v in self.audited_band.items()},
                "audited_exceeds": {k: self.exceeds(k, audited=True) for k in NUMBERS},
                "n_members": self.n_members, "n_nonmembers": self.n_nonmembers, "n_models": self.n_models,
                "permutations": self.permutations, "band_coverage": BAND}


def _prediction_band(values: np.ndarray) -> tuple[float, float]:
    """Where one more exchangeable value falls with 95% probability, from the order statistics of ``values``
    (clamped to the smallest and largest when they are too few)."""
    v = np.sort(values[np.isfinite(values)])
    m = len(v)
    if m == 0:
        return float("nan"), float("nan")
    tail = (1 - BAND) / 2
    lo = max(int(np.floor(tail * (m + 1))), 1)
    hi = min(int(np.ceil((1 - tail) * (m + 1))), m)
    return float(v[lo - 1]), float(v[hi - 1])


def band_quantiles(values: list[float]) -> tuple[float, float]:
    """The central ``BAND`` share of the finite ``values`` (NaN, NaN when none is finite)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - BAND) / 2
    return float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))


def retain_leakage(retain_phi: dict[str, np.ndarray], test_phi: dict[str, np.ndarray], *, seed: int = 0,
                   permutations: int = PERMUTATIONS) -> RetainLeakage:
    """Retain leakage from φ ``[K, n_r]`` on retain examples and ``[K, n_t]`` on test examples for the groups
    ``unlearned``, ``oracle`` and ``baseline`` (K each), and ``[n_r]`` / ``[n_t]`` for ``audited``; see the module
    docstring."""
    groups = ("unlearned", "oracle", "baseline")
    r = {g: np.atleast_2d(np.asarray(retain_phi[g], float)) for g in groups}
    t = {g: np.atleast_2d(np.asarray(test_phi[g], float)) for g in groups}
    k = r["oracle"].shape[0]
    if k < 1 or any(r[g].shape[0] != k or t[g].shape[0] != k for g in groups):
        raise ValueError(f"retain leakage needs the same number of models in every group; got "
                         f"{[r[g].shape[0] for g in groups]}")
    numbers = {g: attack_numbers(r[g], t[g]) for g in groups}
    difference = {key: numbers["unlearned"][key] - numbers["oracle"][key] for key in NUMBERS}
    pool_r, pool_t = np.concatenate([r["oracle"], r["baseline"]]), np.concatenate([t["oracle"], t["baseline"]])
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {key: [] for key in NUMBERS}
    for _ in range(permutations):
        order = rng.permutation(2 * k)
        a, b = order[:k], order[k:]
        na, nb = attack_numbers(pool_r[a], pool_t[a]), attack_numbers(pool_r[b], pool_t[b])
        for key in NUMBERS:
            draws[key].append(na[key] - nb[key])
    singles = [attack_numbers(pool_r[i], pool_t[i]) for i in range(2 * k)]
    single = {key: np.array([s[key] for s in singles]) for key in NUMBERS}
    audited = attack_numbers(np.asarray(retain_phi["audited"], float), np.asarray(test_phi["audited"], float))
    mean_single = {key: float(np.mean(single[key])) for key in NUMBERS}
    return RetainLeakage(
        unlearned=numbers["unlearned"], oracle=numbers["oracle"], baseline=numbers["baseline"],
        difference=difference, band={key: band_quantiles(draws[key]) for key in NUMBERS}, audited=audited,
        audited_difference={key: audited[key] - mean_single[key] for key in NUMBERS},
        audited_band={key: _prediction_band(single[key] - mean_single[key]) for key in NUMBERS},
        n_members=r["oracle"].shape[1], n_nonmembers=t["oracle"].shape[1], n_models=k, permutations=permutations,
        single_oracles=single)
