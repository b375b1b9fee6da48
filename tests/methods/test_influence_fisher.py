"""Influence unlearning (WoodFisher) and Fisher forgetting: the linear algebra, the scaling and the seeding."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import expunge
from expunge.data import ArrayDataset
from expunge.methods import influence as influence_module
from expunge.methods.fisher import diagonal_fisher, noise_std
from expunge.methods.influence import influence_direction, woodfisher_inverse_vp
from expunge.models import MLP
from expunge.per_sample import per_sample_grads_loop

from tests.helpers import state_equal


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def tiny_problem(n: int = 40, task: str = "classification", seed: int = 0):
    """A small MLP trained a little on random data, with a forget/retain split."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = torch.randint(0, 3, (n,), generator=g) if task == "classification" else torch.randn(n, generator=g)
    data = ArrayDataset(x, y, task=task)
    model = expunge.model("mlp", data, hidden=[6], seed=seed)
    model = expunge.train(model, data, epochs=5, lr=0.1, seed=seed)
    forget, retain = expunge.split_forget(data, fraction=0.2, seed=seed)
    return model, forget, retain


# --- WoodFisher ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("m,p", [(6, 9), (12, 4)])   # the m x m (dual) and the P x P (primal) solve
@pytest.mark.parametrize("block", [None, 2])           # one float64 block, or many
def test_woodfisher_matches_exact_inverse_and_sherman_morrison(m, p, block, monkeypatch):
    if block:
        monkeypatch.setattr(influence_module, "_block", lambda width: block)
    g = torch.Generator().manual_seed(m)
    grads, v, damping = torch.randn(m, p, generator=g, dtype=torch.float64), torch.randn(p, generator=g,
                                                                                         dtype=torch.float64), 0.3
    exact = torch.linalg.solve(damping * torch.eye(p, dtype=torch.float64) + grads.T @ grads / m, v)
    inverse = torch.eye(p, dtype=torch.float64) / damping   # WoodFisher: m rank-1 Sherman–Morrison updates
    for gi in grads:
        u = inverse @ gi
        inverse = inverse - torch.outer(u, u) / (m + gi @ u)
    assert torch.allclose(inverse @ v, exact, rtol=1e-10, atol=1e-12)
    assert torch.allclose(woodfisher_inverse_vp(grads, v, damping), exact, rtol=1e-9, atol=1e-12)
    assert torch.allclose(woodfisher_inverse_vp(grads.float(), v.float(), damping).double(), exact, rtol=1e-4)


def test_influence_direction_has_the_reference_scaling():
    model, forget, retain = tiny_problem()
    gf = per_sample_grads_loop(model, forget.dataset.x[forget.indices], forget.dataset.y[forget.indices])
    gr = per_sample_grads_loop(model, retain.dataset.x[retain.indices], retain.dataset.y[retain.indices])
    n_f, n_r = len(gf), len(gr)
    expected = n_f / (n_f + n_r) * (gf.mean(0) - gr.mean(0))
    assert torch.allclose(influence_direction(model, forget, retain), expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_influence_step_is_alpha_times_inverse_fisher_times_v(task):
    model, forget, retain = tiny_problem(task=task)
    alpha, damping = 0.7, 0.05
    out = expunge.unlearn(model, forget=forget, retain=retain, method="influence", alpha=alpha, damping=damping)
    gr = per_sample_grads_loop(model, retain.dataset.x[retain.indices], retain.dataset.y[retain.indices]).double()
    fisher = damping * torch.eye(gr.shape[1], dtype=torch.float64) + gr.T @ gr / len(gr)
    expected = alpha * torch.linalg.solve(fisher, influence_direction(model, forget, retain).double())
    assert torch.allclose((flat_params(out) - flat_params(model)).double(), expected, rtol=1e-3, atol=1e-6)


def test_influence_max_samples_is_seeded_and_memory_is_checked(monkeypatch):
    model, forget, retain = tiny_problem()
    a = expunge.unlearn(model, forget=forget, retain=retain, method="influence", max_samples=10, seed=1)
    b = expunge.unlearn(model, forget=forget, retain=retain, method="influence", max_samples=10, seed=1)
    c = expunge.unlearn(model, forget=forget, retain=retain, method="influence", max_samples=10, seed=2)
    assert state_equal(a, b) and not state_equal(a, c)
    monkeypatch.setattr(influence_module, "MAX_GRADIENT_BYTES", 1000)
    with pytest.raises(ValueError, match="max_samples <= "):
        expunge.unlearn(model, forget=forget, retain=retain, method="influence")


@pytest.mark.parametrize("bad", [{"damping": 0.0}, {"alpha": -1.0}, {"max_samples": 0}])
def test_influence_rejects_bad_arguments(bad):
    model, forget, retain = tiny_problem()
    with pytest.raises(ValueError, match=next(iter(bad))):
        expunge.unlearn(model, forget=forget, retain=retain, method="influence", **bad)


# --- Fisher forgetting -----------------------------------------------------------------------------------------

def test_true_and_empirical_fisher_match_the_loop():
    model, _, retain = tiny_problem()
    x, y = retain.dataset.x[retain.indices], retain.dataset.y[retain.indices]
    empirical = per_sample_grads_loop(model, x, y).pow(2).mean(0)
    probs = F.softmax(model(x), dim=-1).detach()
    true = sum(probs[:, [c]] * per_sample_grads_loop(model, x, torch.full_like(y, c)).pow(2) for c in range(3))
    for kind, want in (("empirical", empirical), ("true", true.mean(0))):
        got = torch.cat([f.flatten() for f in diagonal_fisher(model, retain, kind).values()])
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-9), kind


def test_fisher_noise_is_seeded_and_follows_the_documented_scale():
    model, forget, retain = tiny_problem()
    run = lambda seed, alpha: expunge.unlearn(model, forget=forget, retain=retain, method="fisher",  # noqa: E731
                                              seed=seed, alpha=alpha)
    assert state_equal(run(3, 1e-4), run(3, 1e-4))
    assert not state_equal(run(3, 1e-4), run(4, 1e-4))
    theta0 = flat_params(model)
    step1, step4 = flat_params(run(3, 1e-4)) - theta0, flat_params(run(3, 4e-4)) - theta0
    assert torch.allclose(step4, 2 * step1, rtol=1e-4, atol=1e-7), "4x alpha must double the noise"
    std = torch.cat([s.flatten() for s in noise_std(diagonal_fisher(model, retain), 1e-4, 1e3).values()])
    g = torch.Generator().manual_seed(3)
    eps = torch.cat([torch.randn(p.shape, generator=g).flatten() for p in model.parameters()])
    assert torch.allclose(step1, std * eps, rtol=1e-3, atol=1e-7)


def test_fisher_variance_cap_and_known_values():
    fisher = {"w": torch.tensor([0.0, 1e-4, 1.0, 100.0])}
    std = noise_std(fisher, alpha=1e-2, max_variance=1e3)["w"]
    assert torch.allclose(std, torch.tensor([1e-2 * 1e3, 1e-2 * 1e3, 1e-2 / (1 + 1e-8), 1e-2 / 100]).sqrt())


def test_fisher_rejects_bad_arguments():
    model, forget, retain = tiny_problem()
    for bad in ({"alpha": 0.0}, {"fisher": "diagonal"}, {"max_variance": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            expunge.unlearn(model, forget=forget, retain=retain, method="fisher", **bad)


def test_influence_runs_on_regression_and_fisher_refuses_it():
    model, forget, retain = tiny_problem(task="regression")
    before = copy.deepcopy(model)
    out = expunge.unlearn(model, forget=forget, retain=retain, method="influence", alpha=1.0, damping=0.1)
    assert state_equal(model, before) and not state_equal(out, model)
    assert all(bool(torch.isfinite(p).all()) for p in out.parameters())
    with pytest.raises(ValueError, match="supports classification"):
        expunge.unlearn(model, forget=forget, retain=retain, method="fisher")
