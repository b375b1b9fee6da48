"""Retain leakage on known answers: unlearned models that are oracles in all but name stay inside the
oracle-vs-oracle band; models that memorised their retain examples more than oracles do are flagged; a TPR at an
FPR the test examples cannot resolve is left out."""
from __future__ import annotations

import numpy as np
import pytest

from expunge.audit.leakage import attack_numbers, retain_leakage
from expunge.metrics import roc_auc, roc_curve, tpr_at_fpr
from expunge.metrics.roc import roc_numbers

K, N = 16, 100


def oracle_like(rng, k=K, n=N, retain_shift=0.0):
    """φ of k models: retain examples N(1 + shift, 1) (members), test examples N(0, 1)."""
    return rng.normal(1.0 + retain_shift, 1, (k, n)), rng.normal(0.0, 1, (k, n))


def groups(rng, shift=0.0, audited_shift=0.0):
    r, t = {}, {}
    for g, s in (("unlearned", shift), ("oracle", 0.0), ("baseline", 0.0)):
        r[g], t[g] = oracle_like(rng, retain_shift=s)
    r["audited"], t["audited"] = (x[0] for x in oracle_like(rng, k=1, retain_shift=audited_shift))
    return r, t


@pytest.mark.parametrize("seed", range(2))
def test_oracles_called_unlearned_stay_inside_the_band(seed):
    g = retain_leakage(*groups(np.random.default_rng(seed)), seed=seed)
    for key in ("auc", "tpr_at_1pct", "tpr_at_0_1pct"):
        lo, hi = g.band[key]
        assert lo <= g.difference[key] <= hi and not g.exceeds(key)
    assert not g.exceeds("auc", audited=True)
    assert g.n_models == K and (g.n_members, g.n_nonmembers) == (N, N)


def test_models_that_memorised_retain_examples_leak():
    g = retain_leakage(*groups(np.random.default_rng(5), shift=0.5, audited_shift=1.0), seed=0)
    # AUC Φ(1.5 / √2) = 0.855 against the oracles' Φ(1 / √2) = 0.760
    assert g.exceeds("auc") and g.difference["auc"] == pytest.approx(0.095, abs=0.03)
    assert g.exceeds("auc", audited=True)
    s = g.summary()
    assert s["retain_leakage_auc_exceeds"] == 1.0 and s["retain_leakage_audited_auc_exceeds"] == 1.0
    assert s["retain_leakage_auc_difference"] == pytest.approx(s["retain_leakage_auc"] - s["retain_leakage_oracle_auc"])


def test_unresolvable_fprs_are_left_out():
    rng = np.random.default_rng(0)
    r, t = groups(rng)
    g = retain_leakage(r, t)
    # pooled: 16 × 100 = 1600 test examples resolve 0.1%; one model's 100 resolve 1% but not 0.1%
    assert np.isfinite(g.unlearned["tpr_at_0_1pct"]) and np.isnan(g.audited["tpr_at_0_1pct"])
    assert np.isfinite(g.audited["tpr_at_1pct"])
    s = g.summary()
    assert "retain_leakage_tpr_at_0_1pct" in s and "retain_leakage_audited_tpr_at_0_1pct" not in s
    few = attack_numbers(rng.normal(size=(2, 40)), rng.normal(size=(2, 40)))      # 80 test examples
    assert np.isnan(few["tpr_at_1pct"]) and np.isnan(few["tpr_at_0_1pct"]) and 0 <= few["auc"] <= 1


def test_roc_numbers_agree_with_the_roc_code():
    rng = np.random.default_rng(1)
    m, n = rng.normal(1, 1, 500), rng.normal(0, 1, 2000)
    fpr, tpr, _ = roc_curve(m, n)
    auc, (at1, at01) = roc_numbers(m, n)
    assert auc == pytest.approx(roc_auc(m, n), abs=1e-12)
    assert (at1, at01) == (tpr_at_fpr(fpr, tpr, 0.01), tpr_at_fpr(fpr, tpr, 0.001))
