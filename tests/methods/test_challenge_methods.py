"""The NeurIPS 2023 challenge solutions: MSG re-initialises exactly the stated fraction of weights (those with the
smallest retain-minus-forget gradient) and damps the others' gradients; CT transposes every convolution kernel."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import expunge
from expunge.data.datasets import features, targets
from expunge.methods import get
from expunge.methods.base import prune_in_place
from expunge.methods.ct import transpose_kernels
from expunge.methods.msg import selected_weights


def _convs(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{n}.weight": m.weight for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


# --- MSG ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [0.3, 0.5])
def test_msg_reinitialises_exactly_the_fraction_with_the_smallest_gradient(cnn_task, rate):
    t = cnn_task
    out = expunge.unlearn(t.original, forget=t.forget, retain=t.retain, method="msg", seed=0, epochs=0,
                          init_rate=rate)
    masks = get("msg")(init_rate=rate).masks(copy.deepcopy(t.original), t.forget, t.retain, seed=0)
    assert set(masks) == set(_convs(t.original)), "auto must pick the convolution weights on a CNN"
    before, after = dict(t.original.named_parameters()), dict(out.named_parameters())
    for name, p in after.items():
        if name not in masks:
            assert torch.equal(p, before[name]), f"{name} is not a selected weight but changed"
            continue
        changed = p != before[name]
        assert int(changed.sum()) == round(rate * p.numel()), f"{name}: wrong number re-initialised"
        assert torch.equal(changed, masks[name]), f"{name}: re-initialised weights differ from the mask"


def test_msg_mask_holds_the_smallest_scores(cnn_task):
    t = cnn_task
    from expunge.methods.msg import score_gradient

    model = copy.deepcopy(t.original)
    names = list(_convs(model))
    g = score_gradient(model, t.forget, t.retain, names, torch.Generator().manual_seed(1))
    masks = get("msg")().masks(model, t.forget, t.retain, seed=0)
    for n in names:
        s = g[n].abs()
        assert float(s[masks[n]].max()) <= float(s[~masks[n]].min())


def test_msg_score_is_the_retain_minus_forget_gradient(cnn_task):
    """g = ∇θ[mean CE on R' − mean CE on F] at θ0 in eval mode, R' the seeded random subset of R as large as F;
    the caller's mode and batch-norm statistics are left as they were."""
    t = cnn_task
    from expunge.methods.msg import score_gradient

    model = copy.deepcopy(t.original).train()
    state = copy.deepcopy(model.state_dict())
    names = list(_convs(model))
    g = score_gradient(model, t.forget, t.retain, names, torch.Generator().manual_seed(1))
    assert model.training and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    pick = torch.randperm(len(t.retain), generator=torch.Generator().manual_seed(1))[:len(t.forget)]
    ref = copy.deepcopy(t.original).eval()
    loss = (F.cross_entropy(ref(features(t.retain)[pick]), targets(t.retain)[pick])
            - F.cross_entropy(ref(features(t.forget)), targets(t.forget)))
    params = dict(ref.named_parameters())
    for n, want in zip(names, torch.autograd.grad(loss, [params[n] for n in names])):
        torch.testing.assert_close(g[n], want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


def test_msg_scales_the_gradients_of_the_kept_weights(cnn_task):
    """One plain SGD step on the whole retain set: kept selected weights move by lr·0.1·g, re-initialised ones and
    every other parameter by lr·g, where g is the retain-loss gradient at the re-initialised weights."""
    t = cnn_task
    lr, common = 0.5, dict(seed=0, momentum=0.0, weight_decay=0.0, schedule="constant", warmup=0.0,
                            batch_size=len(t.retain))
    start = expunge.unlearn(t.original, forget=t.forget, retain=t.retain, method="msg", epochs=0, **common)
    stepped = expunge.unlearn(t.original, forget=t.forget, retain=t.retain, method="msg", epochs=1, lr=lr,
                              **common)
    masks = get("msg")().masks(copy.deepcopy(t.original), t.forget, t.retain, seed=0)
    ref = copy.deepcopy(start).train()
    loss = F.cross_entropy(ref(features(t.retain)), targets(t.retain))
    names = [n for n, _ in ref.named_parameters()]
    grads = dict(zip(names, torch.autograd.grad(loss, list(ref.parameters()))))
    s0, s1 = dict(start.named_parameters()), dict(stepped.named_parameters())
    for n in names:
        scale = torch.ones_like(grads[n])
        if n in masks:
            scale = torch.where(masks[n], 1.0, 0.1)
        expected = -lr * scale * grads[n]
        # float32 noise of a conv-BN network's gradient is ~1e-4 of its scale; a missing 0.1 would be 10x off
        torch.testing.assert_close(s1[n] - s0[n], expected, rtol=1e-2, atol=5e-5 + 2e-3 * float(expected.abs().max()))


def test_msg_on_a_model_without_convolutions_uses_linear_weights(task):
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="msg", seed=0, epochs=0)
    before = dict(task.original.named_parameters())
    for name, p in out.named_parameters():
        changed = int((p != before[name]).sum())
        expected = round(0.3 * p.numel()) if name.endswith("weight") else 0
        assert changed == expected, name


def test_msg_refuses_conv_layers_on_an_mlp_and_bad_arguments(task):
    with pytest.raises(ValueError, match="no convolution layer"):
        selected_weights(task.original, "conv")
    for bad in ({"init_rate": 1.5}, {"grad_scale": -1.0}, {"layers": "bn"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="msg", **bad)


# --- CT -------------------------------------------------------------------------------------------------------

def test_transpose_kernels_swaps_the_spatial_axes_of_every_kernel():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 5), nn.Flatten())
    original = copy.deepcopy(model)
    assert transpose_kernels(model) == ["0", "2"]
    for n, w in _convs(model).items():
        w0 = _convs(original)[n]
        assert torch.equal(w, w0.transpose(2, 3))
        assert not torch.equal(w, w0), "a random kernel is not symmetric"
    assert torch.equal(model[0].bias, original[0].bias)
    transpose_kernels(model)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in original.state_dict().items())


def test_ct_with_no_training_returns_the_transposed_kernels(cnn_task):
    t = cnn_task
    out = expunge.unlearn(t.original, forget=t.forget, retain=t.retain, method="ct", seed=0, epochs=0)
    convs = _convs(t.original)
    for name, v in out.state_dict().items():
        expected = convs[name].transpose(2, 3) if name in convs else t.original.state_dict()[name]
        assert torch.equal(v, expected), name


def test_ct_keeps_pruned_zeros_with_their_weights(cnn_task):
    """With prune_dense_then_recover=, each kernel is pruned, then transposed with its zeros, which then stay zero in training."""
    t = cnn_task
    pruned_original = copy.deepcopy(t.original)
    prune_in_place(pruned_original, 0.5)
    expected = {n: w.transpose(2, 3) for n, w in _convs(pruned_original).items()}
    out = expunge.unlearn(t.original, forget=t.forget, retain=t.retain, method="ct", seed=0, epochs=0,
                          prune_dense_then_recover=0.5)
    trained = expunge.unlearn(t.original, forget=t.forget, retain=t.retain, method="ct", seed=0, epochs=2,
                              prune_dense_then_recover=0.5)
    for name, w in _convs(out).items():
        assert torch.equal(w, expected[name]), name
        zeros = expected[name] == 0
        assert bool(zeros.any())
        assert not bool(_convs(trained)[name][zeros].any()), f"{name}: a pruned weight moved"
        assert bool(_convs(trained)[name][~zeros].ne(expected[name][~zeros]).any()), f"{name}: nothing trained"


def test_ct_refuses_non_square_kernels():
    model = nn.Sequential(nn.Conv2d(1, 2, (1, 3)), nn.Flatten())
    with pytest.raises(ValueError, match="non-square kernel"):
        transpose_kernels(model)
