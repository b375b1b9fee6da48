"""Influence unlearning over all of retain on large models: Fisher-vector products streamed in blocks, the
conjugate-gradient solve against the in-memory closed form, and the memory it takes."""
from __future__ import annotations

import copy
import re
import sys

import pytest
import torch
import torch.nn.functional as F

import expunge
from expunge.data import ArrayDataset
from expunge.methods.influence import woodfisher_inverse_vp, woodfisher_solve
from expunge.models import MLP, SmallCNN
from expunge.per_sample import fisher_vector_product, num_params, per_sample_grads

from tests.methods.test_influence_fisher import flat_params, tiny_problem


@pytest.mark.parametrize("model, y, loss", [
    (MLP(10, 3, hidden=(16,)), torch.arange(37) % 3, "auto"),
    (MLP(10, 1, hidden=(16,)), torch.linspace(-1, 1, 37), "l1"),
    (MLP(10, 2, hidden=(16,)), torch.randn(37, 2), "mse"),
    (MLP(10, 3, hidden=(16,)), torch.arange(37) % 3, lambda out, t: F.cross_entropy(out, t) ** 2),
], ids=["classification", "regression-l1", "two-outputs-mse", "callable-loss"])
def test_fisher_vector_product_is_g_transpose_g_v(model, y, loss):
    torch.manual_seed(0)
    x = torch.randn(37, 10)
    g = per_sample_grads(model, x, y, loss=loss).double()
    v = torch.randn(g.shape[1], dtype=torch.float64)
    want = g.T @ (g @ v)
    for chunk in (5, 37, 100):          # blocks that do not divide the examples, one block, a block larger than N
        got = fisher_vector_product(model, x, y, v, loss=loss, chunk_size=chunk)
        assert got.dtype == torch.float64
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * want.abs().max().item())


def test_fisher_vector_product_uses_running_statistics_and_restores_modes():
    model = SmallCNN(1, 4, width=4)
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 1, 8, 8) + 3)    # running statistics away from the defaults
    x, y = torch.randn(12, 1, 8, 8), torch.arange(12) % 4
    g = per_sample_grads(model, x, y).double()
    v = torch.randn(g.shape[1], dtype=torch.float64)
    got = fisher_vector_product(model, x, y, v, chunk_size=5)
    assert torch.allclose(got, g.T @ (g @ v), rtol=1e-4, atol=1e-6)
    assert model.training and all(m.training for m in model.modules())


def test_fisher_vector_product_rejects_a_vector_of_the_wrong_length():
    model = MLP(10, 3, hidden=(4,))
    with pytest.raises(ValueError, match=r"vector must be a tensor of shape \(59,\)"):
        fisher_vector_product(model, torch.randn(3, 10), torch.arange(3), torch.zeros(7))


@pytest.mark.parametrize("damping", [1.0, 1e-2])
def test_conjugate_gradients_reach_the_closed_form_in_float64(damping):
    model, forget, retain = tiny_problem()
    model = copy.deepcopy(model).double()
    x, y = retain.dataset.x[retain.indices].double(), retain.dataset.y[retain.indices]
    v = torch.randn(num_params(model), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = woodfisher_inverse_vp(per_sample_grads(model, x, y), v, damping)
    got, iterations, residual = woodfisher_solve(model, x, y, v, damping, chunk_size=7, tol=1e-12)
    assert residual <= 1e-12 and 1 <= iterations <= num_params(model) + 1
    assert torch.allclose(got, exact, rtol=1e-9, atol=1e-12 * exact.abs().max().item())


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("damping", [1.0, 0.05])
def test_streamed_and_in_memory_influence_agree(task, damping):
    model, forget, retain = tiny_problem(task=task)
    common = dict(forget=forget, retain=retain, method="influence", alpha=0.7, damping=damping)
    in_memory = expunge.unlearn(model, **common)                        # G fits: closed form
    streamed = expunge.unlearn(model, **common, in_memory_mb=0, chunk_size=7)
    step_memory = flat_params(in_memory) - flat_params(model)
    step_streamed = flat_params(streamed) - flat_params(model)
    assert step_memory.abs().max() > 1e-4
    assert torch.allclose(step_streamed, step_memory, rtol=1e-4, atol=1e-5 * step_memory.abs().max().item())
    again = expunge.unlearn(model, **common, in_memory_mb=0, chunk_size=7)
    assert torch.equal(flat_params(again), flat_params(streamed))          # bitwise repeatable


def test_a_solve_that_stops_early_says_so():
    model, forget, retain = tiny_problem()
    with pytest.warns(RuntimeWarning, match=r"stopped after 1 iterations at relative residual .*raise max_iter"):
        expunge.unlearn(model, forget=forget, retain=retain, method="influence", damping=1e-3, in_memory_mb=0,
                        max_iter=1)


def _peak_kib() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1))


def _reset_peak() -> int:
    """Reset the process's peak resident size to the current one (Linux); return it in KiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return int(re.search(r"VmRSS:\s+(\d+)", open("/proc/self/status").read()).group(1))


def _can_measure_peak() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        _reset_peak()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _can_measure_peak(), reason="needs Linux's /proc/self/clear_refs to measure peak memory")
def test_a_million_parameter_model_uses_all_of_retain_in_bounded_memory():
    """2048 retain examples on a 1.05M-parameter MLP: the per-sample gradient matrix would take 8.6 GB; the
    streamed solve's peak stays under 256 MiB above what was resident before. Two iterations keep the test quick
    (convergence is checked on small models above; benchmarks/influence_memory.py runs it to the end)."""
    g = torch.Generator().manual_seed(0)
    n, d = 2304, 512
    x, y = torch.randn(n, d, generator=g), torch.randint(0, 10, (n,), generator=g)
    data = ArrayDataset(x, y, task="classification")
    model = expunge.model("mlp", data, hidden=[1024, 512], seed=0)
    forget, retain = expunge.split_forget(data, fraction=1 / 9, seed=0)
    p, m = num_params(model), len(retain)
    assert p > 1_000_000 and m == 2048
    fisher_vector_product(MLP(2, 2, hidden=(2,)), torch.randn(2, 2), torch.arange(2), torch.zeros(12))  # warm up
    before = _reset_peak()
    with pytest.warns(RuntimeWarning, match="stopped after 2 iterations"):
        out = expunge.unlearn(model, forget=forget, retain=retain, method="influence", max_iter=2)
    extra = (_peak_kib() - before) * 1024
    assert extra < 256 * 2 ** 20, f"peak {extra / 2 ** 20:.0f} MiB above the start"
    assert extra < m * p * 4 / 32
    step = flat_params(out) - flat_params(model)
    assert bool(torch.isfinite(step).all()) and step.abs().max() > 0

