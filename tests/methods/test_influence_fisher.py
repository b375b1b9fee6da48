"""Influence unlearning (WoodFisher) and Fisher forgetting: the linear algebra, the scaling and the seeding."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import expunge
from expunge.data import ArrayDataset
from expunge.methods import influence as influence_module
from expunge.methods.fisher import diagonal_fisher, noise_distribution
from expunge.methods.influence import influence_direction, woodfisher_inverse_vp
from expunge.per_sample import per_sample_grads_loop

from tests.helpers import state_equal


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def tiny_problem(n: int = 40, task: str = "classification", seed: int = 0, **split):
    """A small MLP trained a little on random data, with a forget/retain split (random 20% unless ``split``)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = torch.randint(0, 3, (n,), generator=g) if task == "classification" else torch.randn(n, generator=g)
    data = ArrayDataset(x, y, task=task)
    model = expunge.model("mlp", data, hidden=[6], seed=seed)
    model = expunge.train(model, data, epochs=5, lr=0.1, seed=seed)
    forget, retain = expunge.split_forget(data, **(split or {"fraction": 0.2, "seed": seed}))
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


def test_influence_max_samples_is_seeded():
    model, forget, retain = tiny_problem()
    a = expunge.unlearn(model, forget=forget, retain=retain, method="influence", max_samples=10, seed=1)
    b = expunge.unlearn(model, forget=forget, retain=retain, method="influence", max_samples=10, seed=1)
    c = expunge.unlearn(model, forget=forget, retain=retain, method="influence", max_samples=10, seed=2)
    assert state_equal(a, b) and not state_equal(a, c)


@pytest.mark.parametrize("bad", [{"damping": 0.0}, {"alpha": -1.0}, {"max_samples": 0}, {"tol": 0.0},
                                 {"max_iter": 0}])
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


def draw(model: torch.nn.Module, dist: dict, seed: int) -> torch.Tensor:
    """mean + sqrt(variance) * eps with eps drawn as the method draws it, flattened in parameter order."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat([(dist[n][0] + dist[n][1].sqrt() * torch.randn(p.shape, generator=g)).flatten()
                      for n, p in model.named_parameters()])


def test_fisher_noise_is_seeded_and_follows_the_documented_distribution():
    model, forget, retain = tiny_problem()
    run = lambda seed, alpha: expunge.unlearn(model, forget=forget, retain=retain, method="fisher",  # noqa: E731
                                              seed=seed, alpha=alpha)
    assert state_equal(run(3, 1e-4), run(3, 1e-4))
    assert not state_equal(run(3, 1e-4), run(4, 1e-4))
    theta0 = flat_params(model)
    step1, step4 = flat_params(run(3, 1e-4)) - theta0, flat_params(run(3, 4e-4)) - theta0
    assert torch.allclose(step4, 2 * step1, rtol=1e-4, atol=1e-7), "4x alpha must double the noise"
    dist = noise_distribution(model, diagonal_fisher(model, retain), alpha=1e-4)
    assert torch.allclose(flat_params(run(3, 1e-4)), draw(model, dist, 3), rtol=1e-5, atol=1e-7)


def test_fisher_variance_known_values_and_the_last_linear_as_head():
    """A model without ``head`` whose hidden layer is as wide as its output: only the last Linear gets the head's
    cap (1e2) and x10; weight matrices get their row means; every 1-D parameter gets x10."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 3))
    fisher = {"0.weight": torch.tensor([[1.0, 0.25], [0.0, 1e-4], [4.0, 4.0]]), "0.bias": torch.tensor([4.0, 0.0, 1.0]),
              "2.weight": torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0]]),
              "2.bias": torch.tensor([0.0, 1.0, 2.0])}
    dist = noise_distribution(net, fisher, alpha=0.1)
    inv = lambda f: 1 / (f + 1e-8)  # noqa: E731
    want = {"0.weight": 0.1 * torch.tensor([[(inv(1.0) + inv(0.25)) / 2] * 2, [1e3] * 2, [inv(4.0)] * 2]),
            "0.bias": 10 * 0.1 * torch.tensor([inv(4.0), 1e3, inv(1.0)]),
            "2.weight": 10 * 0.1 * torch.tensor([[(inv(1.0) + 2e2) / 3] * 3, [inv(0.5)] * 3, [1e2] * 3]),
            "2.bias": 10 * 0.1 * torch.tensor([1e2, inv(1.0), inv(2.0)])}
    for name, p in net.named_parameters():
        assert torch.equal(dist[name][0], p.detach()), name
        assert torch.allclose(dist[name][1], want[name], rtol=1e-6), name


def test_fisher_variance_is_constant_within_each_output_unit():
    model, _, retain = tiny_problem()
    fisher = diagonal_fisher(model, retain)
    dist = noise_distribution(model, fisher, alpha=1e-4)
    matrices = [n for n, p in model.named_parameters() if p.ndim == 2]
    assert matrices == ["features.1.weight", "head.weight"]
    for name in matrices:
        var = dist[name][1]
        assert torch.equal(var, var[:, :1].expand_as(var)), name
        assert not torch.equal(fisher[name], fisher[name][:, :1].expand_as(var)), "the Fisher itself varies"


def test_classwise_fisher_removes_the_head_rows_of_the_forgotten_classes():
    model, forget, retain = tiny_problem(classes=[1])
    out = expunge.unlearn(model, forget=forget, retain=retain, method="fisher", seed=5)
    dist = noise_distribution(model, diagonal_fisher(model, retain), alpha=1e-6, forget_classes=[1])
    assert torch.allclose(flat_params(out), draw(model, dist, 5), rtol=1e-5, atol=1e-7)
    for name in ("head.weight", "head.bias"):
        mean, var = dist[name]
        assert torch.equal(mean[1], torch.zeros_like(mean[1])) and torch.allclose(var[1], torch.full_like(var[1], 1e-3))
        assert torch.equal(mean[[0, 2]], dict(model.named_parameters())[name][[0, 2]].detach())
    assert model.head.weight[1].abs().max() > 0.25 and out.head.weight[1].abs().max() < 0.12
    kept = expunge.unlearn(model, forget=forget, retain=retain, method="fisher", alpha=1e-8, forget_classes=[])
    assert torch.allclose(kept.head.weight[1], model.head.weight[1], atol=0.01), "[] turns the removal off"
    _, random_forget, random_retain = tiny_problem()
    chosen = expunge.unlearn(model, forget=random_forget, retain=random_retain, method="fisher", forget_classes=[2])
    assert chosen.head.weight[2].abs().max() < 0.12 and model.head.weight[2].abs().max() > 0.25
    with pytest.raises(ValueError, match="forget_classes"):
        expunge.unlearn(model, forget=forget, retain=retain, method="fisher", forget_classes=[3])


def test_classwise_fisher_on_a_model_without_head_uses_its_last_linear():
    g = torch.Generator().manual_seed(0)
    data = ArrayDataset(torch.randn(60, 4, generator=g), torch.arange(60) % 3)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 3))
    net = expunge.train(net, data, epochs=5, lr=0.1, seed=0)
    forget, retain = expunge.split_forget(data, classes=[0])
    out = expunge.unlearn(net, forget=forget, retain=retain, method="fisher", alpha=1e-8)
    assert net[2].weight[0].abs().max() > 0.25 and out[2].weight[0].abs().max() < 0.12 and out[2].bias[0].abs() < 0.12
    assert torch.allclose(out[2].weight[1:], net[2].weight[1:], atol=0.01)
    assert torch.allclose(out[0].weight, net[0].weight, atol=0.01), "a hidden layer is never removed"
    with pytest.raises(ValueError, match="no nn.Linear"):
        expunge.unlearn(torch.nn.Sequential(torch.nn.Flatten()), forget=forget, retain=retain, method="fisher")


def test_fisher_rejects_bad_arguments():
    model, forget, retain = tiny_problem()
    for bad in ({"alpha": 0.0}, {"fisher": "diagonal"}, {"max_variance": -1.0}, {"head_max_variance": 0.0},
                {"forget_classes": [1, 1]}, {"forget_classes": [-1]}):
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
