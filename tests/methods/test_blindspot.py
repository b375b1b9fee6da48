"""Blindspot unlearning (Tarun et al., ICML 2023) on target-range forgetting."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import expunge
from expunge.data.builtin import diabetes
from expunge.data.datasets import targets
from expunge.methods.blindspot import Activations, attention, attention_distance
from tests.conformance.test_regression_methods import ADAM, regression_task, unlearned, w1
from tests.helpers import state_equal


@pytest.fixture(scope="module")
def rtask():
    return regression_task()


@pytest.fixture(scope="module")
def finetuned(rtask):
    """Plain fine-tuning on the retain set with the same budget (1 epoch, Adam 1e-3)."""
    return expunge.unlearn(rtask.original, forget=rtask.forget, retain=rtask.retain, method="finetune", seed=0,
                           epochs=1, lr=1e-3, **ADAM)


def test_brings_forget_predictions_to_the_oracle(rtask, finetuned):
    ours = unlearned("blindspot")
    original, ft, got = w1(rtask.original), w1(finetuned), w1(ours)
    assert got < 0.5 * ft, f"blindspot W1 {got:.3f} vs fine-tuning {ft:.3f}"
    assert got < 0.25 * original, f"blindspot W1 {got:.3f} vs original {original:.3f}"
    assert expunge.provenance(ours).seconds < 5


def test_keeps_retain_error_near_the_oracle(rtask):
    ours = expunge.evaluate(unlearned("blindspot"), forget=rtask.forget, retain=rtask.retain, test=rtask.test)
    oracle = expunge.evaluate(rtask.oracle, forget=rtask.forget, retain=rtask.retain, test=rtask.test)
    assert ours["retain_mae"] < 1.2 * oracle["retain_mae"]
    assert ours["test_mae"] < 1.2 * oracle["test_mae"]


def test_attention_of_conv_maps_and_hidden_units():
    x = torch.randn(4, 3, 5, 5)
    a = attention(x)
    assert a.shape == (4, 25)
    assert torch.allclose(a.norm(dim=1), torch.ones(4))
    assert torch.allclose(a, torch.nn.functional.normalize(x.pow(2).mean(1).flatten(1), dim=1))
    h = torch.randn(4, 7)
    assert attention(h).shape == (4, 7)     # an MLP's units each count as a position
    assert float(attention_distance(h, 3 * h)) == pytest.approx(0.0, abs=1e-12)
    assert float(attention_distance(h, torch.randn(4, 7))) > 0


def test_hooks_collect_hidden_activations_and_are_removed():
    model = expunge.models.MLP(10, 1, hidden=(8, 6))
    acts = Activations(model, None)
    out, got = acts.run(model, torch.randn(3, 10))
    assert [a.shape for a in got] == [(3, 8), (3, 6)]
    acts.remove()
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match="unknown module"):
        Activations(model, ["features.99"])


def test_named_layers_and_beta_zero_change_the_result(rtask):
    base = unlearned("blindspot")
    kw = dict(forget=rtask.forget, retain=rtask.retain, method="blindspot", seed=0)
    no_at = expunge.unlearn(rtask.original, beta=0.0, **kw)
    first_layer = expunge.unlearn(rtask.original, at_layers=["features.2"], **kw)
    assert not torch.equal(no_at.head.weight, base.head.weight)
    assert not torch.equal(first_layer.head.weight, base.head.weight)


def test_never_reads_forget_targets(rtask):
    """Scrambling the forget set's targets leaves the result bitwise unchanged."""
    train = rtask.train
    y = train.y.clone()
    y[rtask.forget.indices] = torch.randn(len(rtask.forget.indices), generator=torch.Generator().manual_seed(1))
    scrambled = expunge.as_dataset(train.x, y, task="regression")
    forget, retain = expunge.split_forget(scrambled, indices=rtask.forget.indices)
    out = expunge.unlearn(rtask.original, forget=forget, retain=retain, method="blindspot", seed=0)
    assert state_equal(out, unlearned("blindspot"))


def test_rejects_classification_and_bad_arguments(rtask, task):
    with pytest.raises(ValueError, match="regression"):
        expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="blindspot")
    with pytest.raises(ValueError, match="beta"):
        expunge.unlearn(rtask.original, forget=rtask.forget, retain=rtask.retain, method="blindspot", beta=-1.0)
    with pytest.raises(ValueError, match="retain"):
        expunge.unlearn(rtask.original, forget=rtask.forget, method="blindspot")


def test_real_data_smoke_diabetes():
    """sklearn's diabetes (309 training rows) is too small to show forgetting; it must simply run cleanly."""
    train, test = diabetes()
    y = targets(train).numpy()
    forget, retain = expunge.split_forget(train, where=y <= np.quantile(y, 0.25))
    original = expunge.train(expunge.model("mlp", train, hidden=[32]), train, epochs=20, lr=1e-3, seed=0,
                             optimizer="adam", weight_decay=0.0, loss="l1", batch_size=32)
    out = expunge.unlearn(original, forget=forget, retain=retain, method="blindspot", seed=0, batch_size=32)
    scores = expunge.evaluate(out, forget=forget, retain=retain, test=test, reference=original)
    assert all(np.isfinite(v) for v in scores.values())
    assert not torch.equal(out.head.weight, original.head.weight)
