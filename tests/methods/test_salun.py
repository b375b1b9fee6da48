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


def forget_labels_by_epoch(plan, n_forget: int, epochs: int, seed: int = 0) -> list[torch.Tensor]:
    """The labels the plan gives the forget rows (union positions below ``n_forget``) in each epoch, in forget order."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for epoch in range(epochs):
        labels = torch.full((n_forget,), -1)
        for batch in plan(epoch, g):
            part = batch["data"]
            is_f = part.positions < n_forget
            labels[part.positions[is_f]] = part.y[is_f]
        assert bool((labels >= 0).all()), "a forget example was not seen in an epoch"
        out.append(labels)
    return out


@pytest.mark.parametrize("method", ["random_label", "salun"])
def test_random_labels_are_redrawn_every_epoch_and_seeded(task, method, monkeypatch):
    """As in the reference's RL: new random labels for the forget set each epoch, never the true one; the same
    seed gives the same labels, whatever the batch order."""
    import importlib

    module = importlib.import_module(f"expunge.methods.{method}")
    plans = []
    real_fit = module.fit

    def recording_fit(model, plan, **kwargs):
        plans.append(plan)
        return real_fit(model, plan, **kwargs)

    monkeypatch.setattr(module, "fit", recording_fit)
    for _ in range(2):
        expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=method, seed=3, epochs=1)
    true_y = targets(task.forget)
    first = forget_labels_by_epoch(plans[0], len(true_y), epochs=3)
    again = forget_labels_by_epoch(plans[1], len(true_y), epochs=3, seed=99)   # other batch order
    for labels in first:
        assert not bool((labels == true_y).any())
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])
    other_seed = []
    monkeypatch.setattr(module, "fit", lambda model, plan, **kw: other_seed.append(plan) or model)
    expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=method, seed=4, epochs=1)
    assert not torch.equal(forget_labels_by_epoch(other_seed[0], len(true_y), epochs=1)[0], first[0])


def test_random_label_plan_leaves_the_data_alone(task):
    from expunge.methods._common import random_label_plan

    before = targets(task.forget).clone(), targets(task.retain).clone()
    plan = random_label_plan(task.forget, task.retain, 64, 4, seed=0)
    g = torch.Generator().manual_seed(0)
    for epoch in range(2):
        retain_seen = {}
        for batch in plan(epoch, g):
            part = batch["data"]
            for pos, y in zip(part.positions.tolist(), part.y.tolist()):
                if pos >= len(before[0]):
                    retain_seen[pos - len(before[0])] = y
        assert [retain_seen[i] for i in range(len(before[1]))] == before[1].tolist()
    assert torch.equal(targets(task.forget), before[0]) and torch.equal(targets(task.retain), before[1])
