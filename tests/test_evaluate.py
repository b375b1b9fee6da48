"""evaluate(): the score dict for classification (random and class-wise) and regression."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import expunge
from expunge.metrics import svc_mia_efficacy


class Lookup(nn.Module):
    """Predicts fixed logits per example id (x holds the id), to test metrics on known outputs."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits[x[:, 0].long()]


def test_accuracies_and_classwise_split():
    # 10 examples with ids 0..9, labels i % 2; the model is right on ids < 6 only
    y = np.arange(10) % 2
    logits = np.zeros((10, 2))
    logits[np.arange(10), y] = 1.0
    logits[6:] = logits[6:, ::-1]
    data = expunge.as_dataset(np.arange(10)[:, None].astype(np.float32), y)
    forget, retain = expunge.split_forget(data, classes=[1])
    scores = expunge.evaluate(Lookup(logits), forget=forget, retain=retain, test=data)
    assert scores["forget_acc"] == pytest.approx(60.0)           # ids 1,3,5 right; 7,9 wrong
    assert scores["ua"] == pytest.approx(40.0)
    assert scores["retain_acc"] == pytest.approx(60.0)           # ids 0,2,4 right; 6,8 wrong
    assert scores["test_acc"] == pytest.approx(60.0)             # remaining class 0 only
    assert scores["test_forget_acc"] == pytest.approx(60.0)
    assert scores["evidence_tier"] == 0.0


def test_gaps_against_the_reference():
    y = np.arange(10) % 2
    good = np.zeros((10, 2))
    good[np.arange(10), y] = 1.0
    data = expunge.as_dataset(np.arange(10)[:, None].astype(np.float32), y)
    forget, retain = expunge.split_forget(data, indices=[0, 1])
    a = expunge.evaluate(Lookup(good), forget=forget, retain=retain, test=data, reference=Lookup(-good))
    assert a["gap_ua"] == pytest.approx(100.0) and a["gap_retain_acc"] == pytest.approx(100.0)
    # every example has the same confidence, so the MIA cannot tell members from non-members: it is flagged and
    # left out of the Avg. Gap, which says so
    assert a["mia_unstable"] == 1.0 and a["avg_gap_without_mia"] == 1.0
    assert a["avg_gap"] == pytest.approx((a["gap_ua"] + a["gap_retain_acc"] + a["gap_test_acc"]) / 3)


def test_mia_efficacy_separates_member_like_from_test_like_scores():
    rng = np.random.default_rng(0)
    members = torch.tensor(rng.uniform(0.9, 1.0, 200))
    nonmembers = torch.tensor(rng.uniform(0.0, 0.5, 200))
    assert svc_mia_efficacy(torch.tensor(rng.uniform(0.9, 1.0, 50)), members, nonmembers) < 5
    assert svc_mia_efficacy(torch.tensor(rng.uniform(0.0, 0.5, 50)), members, nonmembers) > 95


def test_regression_scores():
    train, test = expunge.data.friedman(n=600)
    forget, retain = expunge.split_forget(train, fraction=0.2, seed=0)
    m = expunge.train(expunge.model("mlp", train, hidden=[32]), train, epochs=5, lr=0.01, seed=0)
    ref = expunge.unlearn(m, forget=forget, retain=retain, method="retrain", seed=0)
    s = expunge.evaluate(m, forget=forget, retain=retain, test=test, reference=ref)
    for key in ("forget_mae", "retain_mae", "test_mae", "mia_efficacy", "w1_to_reference", "gap_forget_mae"):
        assert isinstance(s[key], float) and s[key] >= 0, key
    assert "forget_acc" not in s
    assert expunge.evaluate(m, forget=forget, retain=retain, test=test, reference=m)["w1_to_reference"] == 0.0


@pytest.fixture(scope="module")
def memorised():
    """300 training rows an MLP memorises, its original, 16 oracles trained together, and 8 more oracles."""
    import expunge.ensemble as E

    train, test = expunge.data.generated_classification(n=400, seed=0)
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    recipe = dict(epochs=30, lr=0.05, batch_size=32)
    original = expunge.train(expunge.model("mlp", train, hidden=[64]), train, seed=0, **recipe)
    oracles = E.unlearn(original, forget=forget, retain=retain, method="retrain", seeds=range(1, 17))
    others = E.unlearn(original, forget=forget, retain=retain, method="retrain", seeds=range(99, 107))
    return train, test, forget, retain, original, oracles, others


LIRA_KEYS = ("lira_auc", "lira_tpr_at_1pct", "lira_tpr_at_0_1pct", "n_reference", "lira_oracle_auc")


def test_oracles_add_tier1_lira(memorised):
    train, test, forget, retain, original, oracles, others = memorised
    split = dict(forget=forget, retain=retain, test=test, reference=others.member(0))
    plain = expunge.evaluate(original, **split)
    remembers = expunge.evaluate(original, **split, oracles=oracles)
    assert remembers["evidence_tier"] == 1.0 and remembers["n_reference"] == 16.0
    assert {k: remembers[k] for k in plain if k != "evidence_tier"} == \
        {k: v for k, v in plain.items() if k != "evidence_tier"}           # the tier-0 scores are unchanged
    # the original trained on the forget set: LiRA separates forget from test far beyond a held-out oracle
    assert remembers["lira_auc"] > remembers["lira_oracle_auc"] + 0.2 and remembers["lira_tpr_at_1pct"] > 0.1
    assert 0.35 < remembers["lira_oracle_auc"] < 0.65
    # oracles outside the reference set score like the held-out ones: one oracle's AUC varies by about 0.045
    # here (30 forget vs 100 test examples), the mean of 8 by about 0.016
    fresh = [expunge.evaluate(m, forget=forget, retain=retain, test=test, oracles=oracles)["lira_auc"]
             for m in others.members()]
    assert abs(np.mean(fresh) - remembers["lira_oracle_auc"]) < 0.06


def test_few_oracles_give_numbers_but_stay_tier_0(memorised):
    from expunge.ensemble import Ensemble

    train, test, forget, retain, original, oracles, others = memorised
    few = Ensemble(oracles.members()[:8])
    s = expunge.evaluate(original, forget=forget, retain=retain, test=test, oracles=few)
    assert s["evidence_tier"] == 0.0 and s["n_reference"] == 8.0 and all(k in s for k in LIRA_KEYS)


def test_oracles_bad_input(memorised):
    train, test, forget, retain, original, oracles, others = memorised
    with pytest.raises(TypeError, match="Ensemble"):
        expunge.evaluate(original, forget=forget, retain=retain, test=test, oracles=others.member(0))
    with pytest.raises(ValueError, match="needs test="):
        expunge.evaluate(original, forget=forget, retain=retain, oracles=oracles)
    with pytest.raises(TypeError, match="AuditResult"):
        expunge.evaluate(original, forget=forget, retain=retain, evidence={"evidence_tier": 2})


def test_evidence_merges_an_audit(memorised):
    from expunge.audit import audit

    train, test, forget, retain, original, oracles, others = memorised
    result = audit(expunge.model("mlp", train, hidden=[64]), train, test, forget=forget, retain=retain,
                   method="finetune", method_args={"epochs": 1, "lr": 1e-5}, recipe=dict(epochs=30, lr=0.05,
                                                                                        batch_size=32), n_models=16)
    s = expunge.evaluate(original, forget=forget, retain=retain, test=test, evidence=result)
    assert s["evidence_tier"] == 1.0 == result.tier
    assert s["ulira_accuracy"] == result.summary()["ulira_accuracy"] and "challenge_baseline_forget_quality" in s
    assert s["forget_acc"] == expunge.evaluate(original, forget=forget, retain=retain)["forget_acc"]
    other, _ = expunge.split_forget(train, fraction=0.1, seed=1)
    with pytest.raises(ValueError, match="another forget set"):
        expunge.evaluate(original, forget=other, retain=retain, test=test, evidence=result)


def test_reference_scores_are_computed_once_per_reference_and_data(task, monkeypatch):
    """Tuning scores many models against one oracle: the oracle's own scores (its SVC MIA: 5 fits) are computed
    once; a changed oracle or other data is scored again; the numbers are those an uncached call gives."""
    import importlib

    ev = importlib.import_module("expunge.evaluate")     # the module (expunge.evaluate is also the function)
    ev._reference_cache.clear()
    calls = []
    real = ev._scores
    monkeypatch.setattr(ev, "_scores", lambda model, *a: calls.append(model) or real(model, *a))
    first = ev.evaluate(task.original, forget=task.forget, retain=task.retain, test=task.test, reference=task.oracle)
    again = ev.evaluate(task.original, forget=task.forget, retain=task.retain, test=task.test, reference=task.oracle)
    assert first == again and sum(m is task.oracle for m in calls) == 1
    ev._reference_cache.clear()
    assert ev.evaluate(task.original, forget=task.forget, retain=task.retain, test=task.test,
                       reference=task.oracle) == first
    changed = expunge.unlearn(task.oracle, forget=task.forget, retain=task.retain, method="finetune", epochs=1)
    ev.evaluate(task.original, forget=task.forget, retain=task.retain, reference=changed)
    ev.evaluate(task.original, forget=task.forget, retain=task.retain, test=task.test, reference=changed)
    assert sum(m is changed for m in calls) == 2          # other data (no test set): scored again
    with torch.no_grad():
        next(changed.parameters()).add_(0.1)              # same object, other weights: scored again
    ev.evaluate(task.original, forget=task.forget, retain=task.retain, test=task.test, reference=changed)
    assert sum(m is changed for m in calls) == 3
