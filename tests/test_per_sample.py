"""Vectorised per-sample gradients against the batch-size-1 loop, on an MLP, a CNN with BatchNorm and a regressor."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from expunge.models import MLP, SmallCNN
from expunge.per_sample import (add_flat_, num_params, per_sample_grads, per_sample_grads_loop, summed_grad,
                                trainable)

TOL = 1e-4


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Worst example's relative error ‖a_i − b_i‖ / ‖b_i‖."""
    return float(((a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-30)).max())


def trained_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = SmallCNN(1, 4, width=4)
    x, y = torch.randn(24, 1, 8, 8), torch.randint(0, 4, (24,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):   # a few train-mode steps so BatchNorm's running statistics are not the defaults
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, x, y


def test_mlp_matches_loop():
    torch.manual_seed(0)
    model = MLP(12, 3, hidden=(16, 8))
    x, y = torch.randn(40, 12), torch.randint(0, 3, (40,))
    fast, slow = per_sample_grads(model, x, y, chunk_size=16), per_sample_grads_loop(model, x, y)
    assert fast.shape == (40, num_params(model))
    assert max_rel_diff(fast, slow) <= TOL
    assert float(slow.norm(dim=1).min()) > 0


def test_cnn_with_batchnorm_matches_loop_and_keeps_train_mode():
    model, x, y = trained_cnn()
    model.train()
    running = model.features[1].running_mean.clone()
    fast = per_sample_grads(model, x, y, chunk_size=5)
    assert model.training and all(m.training for m in model.modules()), "the caller's mode must be restored"
    assert torch.equal(model.features[1].running_mean, running), "running statistics must not move"
    slow = per_sample_grads_loop(model, x, y)
    assert max_rel_diff(fast, slow) <= TOL
    # eval mode is what makes examples independent: in train mode a batch of one would normalise by itself
    model.eval()
    batch_grad = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), list(model.parameters()))
    assert torch.allclose(fast.sum(0), torch.cat([g.flatten() for g in batch_grad]), atol=1e-4)


@pytest.mark.parametrize("outputs,loss", [(1, "mse"), (3, "mse"), (1, "l1")])
def test_regression_matches_loop(outputs, loss):
    torch.manual_seed(1)
    model = MLP(6, outputs, hidden=(10,))
    x = torch.randn(30, 6)
    y = torch.randn(30) if outputs == 1 else torch.randn(30, outputs)
    fast = per_sample_grads(model, x, y, loss=loss, chunk_size=7)
    assert max_rel_diff(fast, per_sample_grads_loop(model, x, y, loss=loss)) <= TOL
    assert torch.allclose(fast.sum(0), summed_grad(model, x, y, loss=loss), rtol=1e-4, atol=1e-5)


def test_dict_output_custom_loss_and_frozen_parameters():
    torch.manual_seed(2)
    model = MLP(5, 2, hidden=(4,))
    model.features[1].bias.requires_grad_(False)
    x, y = torch.randn(9, 5), torch.randint(0, 2, (9,))

    def margin(out, t):
        return (out[:, 0] - out[:, 1]).sum()

    grads = per_sample_grads(model, x, y, loss=margin, flat=False)
    assert list(grads) == list(trainable(model)) and "features.1.bias" not in grads
    looped = per_sample_grads_loop(model, x, y, loss=margin, flat=False)
    for name in grads:
        assert grads[name].shape == (9, *trainable(model)[name].shape)
        assert torch.allclose(grads[name], looped[name], atol=1e-6)


def test_a_parameter_the_loss_never_reaches_gets_zeros():
    """Both the vectorised path and the batched sum give zeros for a trainable parameter outside the graph."""
    class WithUnused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(4, 3), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    torch.manual_seed(4)
    model, x, y = WithUnused(), torch.randn(6, 4), torch.randint(0, 3, (6,))
    fast, total = per_sample_grads(model, x, y), summed_grad(model, x, y)
    unused = slice(num_params(model.used), None)
    assert not fast[:, unused].any() and not total[unused].any()
    assert torch.allclose(fast.sum(0), total, atol=1e-6) and bool(total.any())


def test_chunk_size_does_not_change_the_result():
    torch.manual_seed(3)
    model = MLP(4, 3, hidden=(5,))
    x, y = torch.randn(11, 4), torch.randint(0, 3, (11,))
    ref = per_sample_grads(model, x, y)
    for chunk in (1, 4, 11, 100):
        assert torch.allclose(per_sample_grads(model, x, y, chunk_size=chunk), ref, atol=1e-7)


def test_add_flat_applies_a_vector_in_parameter_order():
    model = MLP(3, 2, hidden=(2,))
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    step = torch.arange(before.numel(), dtype=torch.float32)
    add_flat_(model, step, 0.5)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.allclose(after - before, 0.5 * step)
    with pytest.raises(ValueError, match="expected"):
        add_flat_(model, step[:-1])


def test_bad_input_is_rejected():
    model = MLP(3, 2, hidden=(2,))
    x, y = torch.randn(4, 3), torch.randint(0, 2, (4,))
    with pytest.raises(ValueError, match="differ in length"):
        per_sample_grads(model, x, y[:3])
    with pytest.raises(ValueError, match="loss='hinge'"):
        per_sample_grads(model, x, y, loss="hinge")
    with pytest.raises(ValueError, match="chunk_size=0"):
        per_sample_grads(model, x, y, chunk_size=0)
    with pytest.raises(TypeError, match="tensors"):
        per_sample_grads(model, x.numpy(), y)


def test_docstring_example():
    import doctest

    import expunge.per_sample

    result = doctest.testmod(expunge.per_sample, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
