from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import expunge
from expunge.data.datasets import features, targets
from expunge.methods.salun import saliency_mask, top_fraction_mask


def test_top_fraction_mask_is_global_and_exact():
    scores = {"a": torch.tensor([1.0, 5.0, 3.0]), "b": torch.tensor([[4.0, 0.0], [2.0, 6.0]])}
    masks = top_fraction_mask(scores, 3 / 7)
    assert masks["a"].tolist() == [False, True, False]
    assert masks["b"].tolist() == [[True, False], [False, True]]


def test_mask_picks_the_largest_forget_gradients(task):
    """The mask holds round(ratio · total) weights, each with a larger |∇θ Σ_F CE| (computed here in one batch at
    θ0, eval mode) than every weight outside it, ranked over all layers together."""
    ratio = 0.2
    masks = saliency_mask(task.original, task.forget, ratio)
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(ratio * total)
    model = copy.deepcopy(task.original).eval()
    loss = F.cross_entropy(model(features(task.forget)), targets(task.forget), reduction="sum")
    names = [n for n, _ in model.named_parameters()]
    grads = dict(zip(names, (g.abs() for g in torch.autograd.grad(loss, list(model.parameters())))))
    inside = torch.cat([grads[n][masks[n]] for n in names])
    outside = torch.cat([grads[n][~masks[n]] for n in names])
    assert float(inside.min()) >= float(outside.max()) * (1 - 1e-4)
    shares = [float(masks[n].float().mean()) for n in names]
    assert max(shares) > 2 * ratio or min(shares) < ratio / 2, "ranked per layer, not globally"


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_masked_out_weights_do_not_move_under_weight_decay_and_momentum(task, optimizer):
    """The trap of the reference code: a gradient mask alone lets weight decay and momentum move frozen weights."""
    ratio = 0.3
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="salun", seed=0,
                          ratio=ratio, epochs=3, lr=0.05, momentum=0.9, weight_decay=0.05, optimizer=optimizer)
    masks = saliency_mask(task.original, task.forget, ratio)
    before = dict(task.original.named_parameters())
    moved_inside = 0
    for name, p in out.named_parameters():
        frozen = ~masks[name]
        assert torch.equal(p[frozen], before[name][frozen]), f"{name}: a masked-out weight moved"
        moved_inside += int((p[masks[name]] != before[name][masks[name]]).sum())
    assert moved_inside > 0, "no salient weight moved: the method did nothing"


def test_rejects_a_ratio_outside_0_1(task):
    with pytest.raises(ValueError, match="ratio"):
        expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="salun", ratio=1.5)
