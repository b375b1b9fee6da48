"""Boundary Unlearning: shrink relabels the forget set with adversarial nearest wrong classes; expand trains into a
shadow class and hands back the original architecture."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import expunge
from expunge.data import ArrayDataset
from expunge.data.datasets import features, targets
from expunge.methods.base import prune_in_place
from expunge.methods._embedding import final_linear_of
from expunge.methods.boundary_expand import shrink_into, widened
from expunge.methods.boundary_shrink import adversarial_inputs, neighbour_labels


# --- boundary_shrink ------------------------------------------------------------------------------------------

def test_neighbour_labels_are_never_the_true_class_and_follow_the_attack(task):
    model = task.original
    x, y = features(task.forget), targets(task.forget)
    labels, success = neighbour_labels(model, x, y, attack="fgsm", bound=0.5)
    assert not bool((labels == y).any()), "a neighbour label equals the true class"
    with torch.no_grad():
        adv_logits = model(adversarial_inputs(model, x, y, attack="fgsm", bound=0.5))
        clean_logits = model(x)
    crossed = adv_logits.argmax(1) != y
    assert 0 < success == pytest.approx(float(crossed.float().mean()))
    # where the attack crossed a boundary, the label is what the original predicts on the adversarial input ...
    assert torch.equal(labels[crossed], adv_logits.argmax(1)[crossed])
    # ... elsewhere the adversarial input's best other class
    expected = adv_logits.scatter(1, y[:, None], float("-inf")).argmax(1)
    assert torch.equal(labels, expected)
    # and the attack matters: the labels are not simply the clean runner-up class
    runner_up = clean_logits.scatter(1, y[:, None], float("-inf")).argmax(1)
    assert not torch.equal(labels, runner_up)


def test_fgsm_step_is_signed_gradient_and_pgd_stays_in_the_ball():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3))
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
    fgsm = adversarial_inputs(model, x, y, attack="fgsm", bound=0.1)
    torch.testing.assert_close(fgsm, x + 0.1 * grad.sign())
    one_step = adversarial_inputs(model, x, y, attack="pgd", bound=0.1, step=0.1, steps=1)
    torch.testing.assert_close(one_step, fgsm)
    pgd = adversarial_inputs(model, x, y, attack="pgd", bound=0.1, step=0.04, steps=5, clip=(-0.5, 0.5))
    assert float((pgd - x.clamp(-0.5, 0.5)).abs().max()) <= 0.1 + 1e-6
    assert float(pgd.min()) >= -0.5 and float(pgd.max()) <= 0.5


def test_shrink_trains_the_forget_set_onto_the_neighbour_labels(task):
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="boundary_shrink",
                          seed=0, epochs=20, lr=0.05)
    labels, _ = neighbour_labels(task.original, features(task.forget), targets(task.forget), bound=0.1)
    with torch.no_grad():
        pred = out(features(task.forget)).argmax(1)
    assert float((pred == labels).float().mean()) > 0.9


@pytest.mark.parametrize("bad", [{"attack": "bim"}, {"bound": 0.0}, {"clip": [1.0, 0.0]}, {"pgd_steps": 0}])
def test_shrink_rejects_bad_arguments(task, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="boundary_shrink", **bad)


# --- boundary_expand ------------------------------------------------------------------------------------------

def _architecture(model: nn.Module) -> tuple:
    return (str(model), {k: tuple(v.shape) for k, v in model.state_dict().items()})


@pytest.mark.parametrize("fixture", ["task", "cnn_task"])
def test_expand_returns_the_original_architecture_and_outputs(request, fixture):
    t = request.getfixturevalue(fixture)
    x = features(t.forget)
    k = t.original(x[:1]).shape[1]
    out = expunge.unlearn(t.original, forget=t.forget, retain=t.retain, method="boundary_expand", seed=0,
                          epochs=10, lr=0.01)
    assert _architecture(out) == _architecture(t.original)
    assert type(out.head) is nn.Linear and out.head.out_features == k
    assert out(x).shape == (len(x), k)
    before = dict(t.original.named_parameters())
    assert any(not torch.equal(p, before[n]) for n, p in out.named_parameters()), "nothing was trained"


def test_widen_then_shrink_restores_the_layer_and_adds_one_fresh_row():
    layer = nn.Linear(4, 3)
    wide = widened(layer, seed=0)
    assert wide.out_features == 4
    assert torch.equal(wide.weight[:3], layer.weight) and torch.equal(wide.bias[:3], layer.bias)
    assert torch.equal(widened(layer, seed=0).weight, wide.weight)   # the shadow row depends on the seed only
    with torch.no_grad():
        wide.weight.add_(1.0)
    target = nn.Linear(4, 3)
    shrink_into(wide, target)
    assert torch.equal(target.weight, wide.weight[:3])


def test_final_layer_without_head_is_the_last_linear_and_no_linear_is_refused():
    seq = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    assert final_linear_of(seq, torch.randn(1, 4), method="boundary_expand") == ("2", seq[2])
    data = ArrayDataset(torch.randn(40, 4), torch.arange(40) % 3)
    forget, retain = expunge.split_forget(data, fraction=0.25, seed=0)
    out = expunge.unlearn(seq, forget=forget, retain=retain, method="boundary_expand", lr=0.1)
    assert _architecture(out) == _architecture(seq)
    bare = expunge.unlearn(nn.Linear(4, 3), forget=forget, retain=retain, method="boundary_expand", lr=0.1)
    assert type(bare) is nn.Linear and bare.out_features == 3
    with pytest.raises(ValueError, match="is not the output of an nn.Linear layer; allowed: a model whose last"):
        expunge.unlearn(nn.Sequential(nn.Flatten()), forget=forget, retain=retain, method="boundary_expand")
    with pytest.raises(ValueError, match="is not the output of an nn.Linear layer"):
        expunge.unlearn(_LinearThenFixed(), forget=forget, retain=retain, method="boundary_expand")


class _LinearThenFixed(nn.Module):
    """A model whose last nn.Linear is followed by a fixed projection, so it is not the output layer."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)

    def forward(self, x):
        return self.body(x)[:, :3]


def test_expand_with_pruning_keeps_the_zeros(task):
    """The weights one-shot pruning zeroes (the head's included) stay zero while the widened model trains, and the
    others train."""
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="boundary_expand", seed=0,
                          epochs=5, lr=0.01, prune_dense_then_recover=0.5)
    assert _architecture(out) == _architecture(task.original)
    pruned = copy.deepcopy(task.original)
    masks = prune_in_place(pruned, 0.5)
    assert "head.weight" in masks
    after, start = dict(out.named_parameters()), dict(pruned.named_parameters())
    for name, keep in masks.items():
        assert not bool(after[name][keep == 0].any()), f"{name}: a pruned weight moved"
        assert not torch.equal(after[name], start[name]), f"{name}: nothing trained"
