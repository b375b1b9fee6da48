"""The SVC MIA: stable on saturated confidences, its uncertainty reported, never a silent coin flip in Avg. Gap."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.svm import SVC

from expunge.metrics import logit_scaled_confidence, svc_mia_efficacy, true_class_confidence
from expunge.metrics.mia import UNSTABLE_RANGE, svc_mia


def _logits(margins, rng, classes=10):
    """Logits whose true class (0) leads the best other class by ``margins``."""
    z = torch.tensor(rng.normal(0, 1, (len(margins), classes)), dtype=torch.float32)
    z[:, 0] = z[:, 1:].max(1).values + torch.tensor(margins, dtype=torch.float32)
    return z, torch.zeros(len(margins), dtype=torch.long)


def _worst_case(nonmember_margins=(15, 25)):
    """Every forget example confidently right (margin 25-35, p(y|x) rounds to exactly 1); members (retain) look
    like the forget set; most non-members (test) are confident too."""
    rng = np.random.default_rng(100)
    forget = _logits(rng.uniform(25, 35, 100), rng)
    members = _logits(np.r_[rng.uniform(25, 35, 1600), rng.uniform(0, 6, 400)], rng)
    nonmembers = _logits(np.r_[rng.uniform(*nonmember_margins, 288), rng.uniform(0, 6, 72)], rng)
    return forget, members, nonmembers


def _reference_attack(forget, members, nonmembers, seed):
    """The single-draw attack on the raw confidence, as the reference code computes it."""
    rng = np.random.default_rng(seed)
    m = rng.choice(members.double().numpy(), len(nonmembers), replace=False)
    x = np.concatenate([m, nonmembers.double().numpy()])[:, None]
    y = np.r_[np.ones(len(m)), np.zeros(len(nonmembers))]
    pred = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y).predict(forget.double().numpy()[:, None])
    return float(100 * (pred == 0).mean())


def test_saturated_confidences_flip_the_raw_attack_but_not_this_one():
    sets = _worst_case()
    raw = [true_class_confidence(*s) for s in sets]
    assert bool((raw[0] == 1).all())                              # the forget set is saturated
    flips = {_reference_attack(*raw, seed) for seed in range(8)}
    assert flips == {0.0, 100.0}                                  # the coin flip this metric replaces
    phi = [torch.from_numpy(logit_scaled_confidence(*s)) for s in sets]
    results = [svc_mia(*phi, seed=seed) for seed in range(8)]
    values = [r.efficacy for r in results]
    assert max(values) - min(values) < 5 and max(values) < 5      # stable: forget examples look like members
    assert not any(r.unstable for r in results)


def test_an_attack_that_cannot_tell_members_from_nonmembers_reports_it():
    # members and non-members drawn alike: whatever the SVC says about the forget set depends on the draw
    sets = _worst_case(nonmember_margins=(25, 35))
    phi = [torch.from_numpy(logit_scaled_confidence(*s)) for s in sets]
    results = [svc_mia(*phi, seed=seed) for seed in range(8)]
    assert sum(r.std for r in results) / len(results) > 10          # the uncertainty is reported, not hidden
    assert sum(r.unstable for r in results) >= 3                    # draws 0 vs 100 apart: flagged a coin flip
    assert all(r.unstable == (max(r.draws) - min(r.draws) >= UNSTABLE_RANGE or r.degenerate) for r in results)
    same = torch.ones(50)
    assert svc_mia(same, same, same).degenerate and svc_mia(same, same, same).unstable


def test_seeded_draws_are_repeatable_and_ties_count_half():
    rng = np.random.default_rng(0)
    f, m, n = (torch.tensor(rng.normal(mu, 1, k)) for mu, k in ((0.5, 40), (1, 300), (0, 100)))
    a, b = svc_mia(f, m, n, seed=3), svc_mia(f, m, n, seed=3)
    assert a == b and len(a.draws) == 5
    assert a.efficacy == pytest.approx(np.mean(a.draws)) and a.std == pytest.approx(np.std(a.draws))
    assert svc_mia(f, m, n, seed=4).draws != a.draws               # another seed draws other members
    # retain no larger than test: every draw uses all of it, so the draws agree
    small = svc_mia(f, m[:100], n, seed=0)
    assert small.std == 0.0 and not small.unstable
    assert a.scores() == {"mia_efficacy": a.efficacy, "mia_efficacy_std": a.std, "mia_unstable": float(a.unstable)}


def test_known_answers_on_separated_scores_and_scale():
    rng = np.random.default_rng(0)
    members = torch.tensor(rng.uniform(0.9, 1.0, 200))
    nonmembers = torch.tensor(rng.uniform(0.0, 0.5, 200))
    like_members, like_test = torch.tensor(rng.uniform(0.9, 1.0, 50)), torch.tensor(rng.uniform(0.0, 0.5, 50))
    assert svc_mia_efficacy(like_members, members, nonmembers) < 5
    assert svc_mia_efficacy(like_test, members, nonmembers) > 95
    # the feature is standardised, so the scale of the scores does not matter
    scaled = svc_mia(like_test * 1000, members * 1000, nonmembers * 1000)
    assert scaled.efficacy == pytest.approx(svc_mia(like_test, members, nonmembers).efficacy)
    assert np.isnan(svc_mia(like_test, members[:0], nonmembers).efficacy)
