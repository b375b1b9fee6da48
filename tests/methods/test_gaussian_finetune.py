"""Gaussian fine-tuning (Tarun et al., ICML 2023) on target-range forgetting."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import expunge
from expunge.data.builtin import diabetes
from expunge.data.datasets import targets
from expunge.methods.gaussian_finetune import gaussian_targets
from tests.conformance.test_regression_methods import ADAM, regression_task, unlearned, w1


@pytest.fixture(scope="module")
def rtask():
    return regression_task()


def test_brings_forget_predictions_to_the_oracle(rtask):
    finetuned = expunge.unlearn(rtask.original, forget=rtask.forget, retain=rtask.retain, method="finetune", seed=0,
                                epochs=1, lr=1e-3, **ADAM)
    ours = unlearned("gaussian_finetune")
    original, ft, got = w1(rtask.original), w1(finetuned), w1(ours)
    assert got < 0.5 * ft, f"gaussian_finetune W1 {got:.3f} vs fine-tuning {ft:.3f}"
    assert got < 0.25 * original, f"gaussian_finetune W1 {got:.3f} vs original {original:.3f}"
    assert expunge.provenance(ours).seconds < 5


def test_keeps_retain_error_near_the_oracle(rtask):
    ours = expunge.evaluate(unlearned("gaussian_finetune"), forget=rtask.forget, retain=rtask.retain, test=rtask.test)
    oracle = expunge.evaluate(rtask.oracle, forget=rtask.forget, retain=rtask.retain, test=rtask.test)
    assert ours["retain_mae"] < 1.2 * oracle["retain_mae"]
    assert ours["test_mae"] < 1.2 * oracle["test_mae"]


def test_targets_follow_the_data_distribution_and_the_seed(rtask):
    y = torch.cat([targets(rtask.forget), targets(rtask.retain)]).double()
    drawn = gaussian_targets(rtask.forget, rtask.retain, seed=0).double()
    assert drawn.shape == targets(rtask.forget).shape
    assert float(drawn.mean()) == pytest.approx(float(y.mean()), abs=0.1 * float(y.std()))
    assert float(drawn.std()) == pytest.approx(float(y.std()), rel=0.1)
    assert torch.equal(drawn, gaussian_targets(rtask.forget, rtask.retain, seed=0).double())
    assert not torch.equal(drawn, gaussian_targets(rtask.forget, rtask.retain, seed=1).double())


def test_multi_output_targets_are_drawn_per_column():
    x = torch.randn(400, 3)
    y = torch.stack([torch.randn(400), 100 + 10 * torch.randn(400)], 1)
    data = expunge.as_dataset(x, y)
    forget, retain = expunge.split_forget(data, fraction=0.5, seed=0)
    drawn = gaussian_targets(forget, retain, seed=0)
    assert drawn.shape == (200, 2)
    assert abs(float(drawn[:, 0].mean())) < 0.5 and abs(float(drawn[:, 1].mean()) - 100) < 3


def test_rejects_classification(task):
    with pytest.raises(ValueError, match="regression"):
        expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="gaussian_finetune")


def test_real_data_smoke_diabetes():
    """sklearn's diabetes (309 training rows) is too small to show forgetting; it must simply run cleanly."""
    train, test = diabetes()
    y = targets(train).numpy()
    forget, retain = expunge.split_forget(train, where=y <= np.quantile(y, 0.25))
    original = expunge.train(expunge.model("mlp", train, hidden=[32]), train, epochs=20, lr=1e-3, seed=0,
                             optimizer="adam", weight_decay=0.0, loss="l1", batch_size=32)
    out = expunge.unlearn(original, forget=forget, retain=retain, method="gaussian_finetune", seed=0,
                          batch_size=32)
    scores = expunge.evaluate(out, forget=forget, retain=retain, test=test, reference=original)
    assert all(np.isfinite(v) for v in scores.values())
    assert not torch.equal(out.head.weight, original.head.weight)
