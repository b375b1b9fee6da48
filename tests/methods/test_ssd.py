from __future__ import annotations

import pytest
import torch

import expunge
from expunge.data.datasets import features, targets
from expunge.methods._common import relabelled_union
from expunge.methods.ssd import dampening_factors, importance
from expunge.per_sample import per_sample_grads


def test_dampening_formula_on_known_values():
    forget = torch.tensor([1.0, 10.0, 100.0, 0.0])
    data = torch.tensor([1.0, 1.0, 1.0, 1.0])
    f = dampening_factors(forget, data, alpha=5.0, lam=1.0)
    # selected only where I_F > 5·I_D: entries 1 and 2, scaled by min(I_D/I_F, 1)
    assert torch.allclose(f, torch.tensor([1.0, 0.1, 0.01, 1.0]))
    assert torch.allclose(dampening_factors(forget, data, alpha=5.0, lam=200.0), torch.ones(4))


def test_importance_is_mean_squared_minibatch_gradient(task):
    model = task.original
    imp = importance(model, task.forget, batch_size=len(task.forget), seed=0)
    x, y = task.forget.dataset.x[task.forget.indices], task.forget.dataset.y[task.forget.indices]
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        assert torch.allclose(imp[name], p.grad.pow(2), atol=1e-10)
    model.zero_grad()


def test_importance_averages_over_minibatches(task):
    """With batches of one, the importance is the mean over examples of each example's squared gradient, whatever
    the order the batches come in."""
    model = task.original
    x, y = features(task.forget), targets(task.forget)
    imp = importance(model, task.forget, batch_size=1, seed=0)
    per_example = per_sample_grads(model, x, y, flat=False)
    for name, g in per_example.items():
        assert torch.allclose(imp[name], g.pow(2).mean(0), rtol=1e-4, atol=1e-12), name


def test_ssd_dampens_by_the_forget_and_full_data_importances(task):
    """End to end: θ ← θ0 · factor(I_F, I_D) with I_D taken over D = F ∪ R (not over R alone)."""
    alpha, lam = 5.0, 1.0
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="ssd", alpha=alpha, lam=lam,
                          seed=0)
    data = relabelled_union(task.forget, task.retain, targets(task.forget))
    forget_imp = importance(task.original, task.forget, 128, seed=0)
    data_imp = importance(task.original, data, 128, seed=0)
    retain_imp = importance(task.original, task.retain, 128, seed=0)
    differs = False
    for name, p in task.original.named_parameters():
        want = p.detach() * dampening_factors(forget_imp[name], data_imp[name], alpha, lam)
        assert torch.allclose(dict(out.named_parameters())[name], want, rtol=1e-6, atol=1e-9), name
        differs |= not torch.allclose(want, p.detach() * dampening_factors(forget_imp[name], retain_imp[name],
                                                                           alpha, lam))
    assert differs, "the full-data importance must matter"


def test_no_weight_grows_or_flips_sign(task):
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="ssd", alpha=5.0)
    for (name, p), q in zip(out.named_parameters(), task.original.parameters()):
        assert bool((p.abs() <= q.abs() + 1e-12).all()), name
        assert bool((p * q >= 0).all()), name
    assert any(not torch.equal(p, q) for p, q in zip(out.parameters(), task.original.parameters()))


def test_rejects_non_positive_alpha(task):
    with pytest.raises(ValueError, match="alpha"):
        expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="ssd", alpha=0.0)
