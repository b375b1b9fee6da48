"""ROC utilities against scikit-learn and hand-worked cases; the AttackResult record."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from expunge.metrics.roc import AttackResult, balanced_accuracy, roc_auc, roc_curve, tpr_at_fpr


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_curve_agree_with_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    members = rng.integers(0, 8, size=300).astype(float) + 1  # few distinct values: many ties
    nonmembers = rng.integers(0, 8, size=500).astype(float)
    y = np.r_[np.ones(300), np.zeros(500)]
    s = np.r_[members, nonmembers]
    assert roc_auc(members, nonmembers) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, thr = roc_curve(members, nonmembers)
    sk_fpr, sk_tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr)
    assert thr[0] == np.inf and np.all(np.diff(thr) < 0)


def test_tpr_at_fpr_counts_thresholds_at_exactly_the_target():
    nonmembers = np.arange(1000.0)                 # one false positive = FPR 0.001 exactly
    members = np.array([999.5, 998.5, 990.5, 0.5])
    fpr, tpr, _ = roc_curve(members, nonmembers)
    assert tpr_at_fpr(fpr, tpr, 0.001) == 0.5      # threshold 998.5: FP = 1 (999), TP = 2
    assert tpr_at_fpr(fpr, tpr, 0.0) == 0.25       # threshold 999.5: no false positive
    assert tpr_at_fpr(fpr, tpr, 0.01) == 0.75      # threshold 990.5: FP = 9
    assert tpr_at_fpr(fpr, tpr, 1.0) == 1.0
    with pytest.raises(ValueError, match="target FPR"):
        tpr_at_fpr(fpr, tpr, 1.5)


def test_balanced_accuracy_extremes():
    fpr, tpr, _ = roc_curve([3.0, 4.0], [1.0, 2.0])
    assert balanced_accuracy(fpr, tpr) == 1.0
    fpr, tpr, _ = roc_curve([1.0, 2.0], [1.0, 2.0])
    assert balanced_accuracy(fpr, tpr) == 0.5


def test_attack_result_separates_memorised_from_not():
    rng = np.random.default_rng(0)
    is_member = rng.random(4000) < 0.5
    memorised = np.where(is_member, rng.normal(4, 1, 4000), rng.normal(0, 1, 4000))
    unseen = rng.normal(0, 1, 4000)
    strong = AttackResult.from_scores("strong", memorised, is_member, n_reference=3)
    weak = AttackResult.from_scores("weak", unseen, is_member)
    assert strong.auc > 0.99 and strong.tpr_at_1pct > 0.6 and strong.balanced_accuracy > 0.95
    assert abs(weak.auc - 0.5) < 0.03 and weak.tpr_at_0_1pct < 0.02 and weak.balanced_accuracy < 0.55
    # the stored ROC is a short, monotone, conservative step curve
    assert len(strong.roc_fpr) <= 103 and np.all(np.diff(strong.roc_tpr) >= 0)
    assert strong.roc_tpr[np.searchsorted(strong.roc_fpr, 0.01)] == pytest.approx(strong.tpr_at_1pct)
    summary = strong.summary()
    assert summary["strong_auc"] == strong.auc and summary["strong_n_reference"] == 3.0
    d = strong.to_dict()
    assert d["n_members"] == is_member.sum() and len(d["scores"]) == 4000


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="at least one member"):
        roc_auc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([np.nan], [1.0])
    with pytest.raises(TypeError, match="boolean"):
        AttackResult.from_scores("x", [1.0, 2.0], [1, 0])
    with pytest.raises(ValueError, match="2 scores"):
        AttackResult.from_scores("x", [1.0, 2.0], np.array([True, False, True]))
