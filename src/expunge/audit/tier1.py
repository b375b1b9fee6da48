"""Tier-1 evidence for one model: offline LiRA with oracles as the reference (OUT) models.

LiRA (Carlini et al., "Membership Inference Attacks From First Principles", IEEE S&P 2022; reference
tensorflow/privacy ``research/mi_lira_2021``) in its offline form needs only models that never trained on the
examples under attack, which is exactly what oracles are for the forget set and for the test set. Per example,
a Gaussian is fitted to the logit-scaled confidence φ under the K oracles; the model's φ is scored by its
one-sided distance z = (φ − μ_out) / σ_out (:func:`expunge.metrics.lira` with ``online=False``). The attack's
members are the forget examples and its non-members the test examples (OUT for every oracle, as the forget
examples are): for a model that truly forgot, both look alike to the attack and the AUC is that of an oracle.

The target value is therefore not 0.5 but what the same attack gives for an oracle it did not use as a reference
(a *held-out* oracle): mean AUC and TPRs over held-out oracles are reported beside the model's. Held-out oracles
are separately trained ones when given, else each of the reference oracles in turn with the other K − 1 as
references (leave one out, up to :data:`LEAVE_ONE_OUT_MAX` of them).

Variance: per-example σ_out from :data:`PER_EXAMPLE_VARIANCE_MIN` reference models on, a global (pooled) σ below,
following the LiRA paper's finding that the fixed-variance attack is stronger with few reference models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics import AttackResult, lira
from .leakage import _prediction_band

PER_EXAMPLE_VARIANCE_MIN = 64
LEAVE_ONE_OUT_MAX = 32


@dataclass
class ReferenceAttack:
    """Offline LiRA on one model (``attack``) and the mean of the same numbers over held-out oracles."""

    attack: AttackResult
    oracle_auc: float
    oracle_tpr_at_1pct: float
    oracle_tpr_at_0_1pct: float
    n_heldout: int
    oracle_auc_high: float = float("nan")   # where one more oracle's AUC falls below with 97.5% probability

    @property
    def n_reference(self) -> int:
        return self.attack.n_reference

    def summary(self) -> dict[str, float]:
        a = self.attack
        return {"lira_auc": a.auc, "lira_tpr_at_1pct": a.tpr_at_1pct, "lira_tpr_at_0_1pct": a.tpr_at_0_1pct,
                "n_reference": float(a.n_reference), "lira_oracle_auc": self.oracle_auc,
                "lira_oracle_tpr_at_1pct": self.oracle_tpr_at_1pct,
                "lira_oracle_tpr_at_0_1pct": self.oracle_tpr_at_0_1pct, "lira_n_heldout": float(self.n_heldout),
                "lira_oracle_auc_high": self.oracle_auc_high}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "attack": self.attack.to_dict()}


def offline_scores(target_phi: np.ndarray, reference_phi: np.ndarray, *, fixed: bool | None = None) -> np.ndarray:
    """Offline LiRA scores (higher = member) of target φ ``[N]`` or ``[T, N]`` against reference φ ``[K, N]``;
    ``fixed`` (global σ) defaults to K < :data:`PER_EXAMPLE_VARIANCE_MIN`."""
    if fixed is None:
        fixed = reference_phi.shape[0] < PER_EXAMPLE_VARIANCE_MIN
    return lira(target_phi, reference_phi, None, online=False, fix_variance=fixed)


def reference_attack(model_phi: Any, oracle_phi: Any, is_forget: Any, *, heldout_phi: Any | None = None
                     ) -> ReferenceAttack:
    """Offline LiRA of a model's φ ``[N]`` with the oracles' φ ``[K, N]`` as references.

    ``is_forget`` ``[N]`` marks the forget examples (the attack's members; the others are test examples).
    ``heldout_phi`` ``[H, N]``: oracles not among the references, attacked the same way for the target value;
    without them, leave-one-out over the references (needs K >= 3), with the same variance estimate as the model's
    attack, so that both numbers come from one attack.
    """
    ref = np.asarray(oracle_phi, float)
    if ref.ndim != 2 or ref.shape[0] < 2:
        raise ValueError(f"the tier-1 attack needs at least 2 oracle reference models; got φ of shape {ref.shape}")
    member = np.asarray(is_forget, bool)
    k = ref.shape[0]
    fixed = k < PER_EXAMPLE_VARIANCE_MIN
    attack = AttackResult.from_scores("lira_offline", offline_scores(np.asarray(model_phi, float), ref, fixed=fixed),
                                      member, n_reference=k)
    if heldout_phi is not None:
        held = offline_scores(np.asarray(heldout_phi, float), ref, fixed=fixed)
    elif k >= 3:
        held = np.stack([offline_scores(ref[i], np.delete(ref, i, axis=0), fixed=fixed)
                         for i in range(min(k, LEAVE_ONE_OUT_MAX))])
    else:
        held = np.empty((0, ref.shape[1]))
    results = [AttackResult.from_scores("lira_offline_oracle", s, member, n_reference=k) for s in held]
    mean = (lambda f: float(np.mean([f(r) for r in results]))) if results else (lambda f: float("nan"))
    # the audited model is, under exact retraining, one more held-out oracle: the upper edge of the held-out
    # oracles' AUCs as a prediction band (the forget examples' φ may move together, so the spread between models,
    # not an AUC's standard error over examples, is what a retrained model's AUC varies by)
    high = _prediction_band(np.asarray([r.auc for r in results], float))[1] if results else float("nan")
    return ReferenceAttack(attack, mean(lambda r: r.auc), mean(lambda r: r.tpr_at_1pct),
                           mean(lambda r: r.tpr_at_0_1pct), len(results), high)
