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
    assert a["avg_gap"] == pytest.approx((a["gap_ua"] + a["gap_retain_acc"] + a["gap_test_acc"]
                                          + a["gap_mia_efficacy"]) / 4)


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
