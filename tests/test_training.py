"""The one training loop: recipes, schedules, plans, hooks, determinism, divergence."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

import expunge
from expunge.data import as_dataset
from expunge.training import (DivergenceError, Recipe, batches, chain, fit, mask_gradients, pin_weights, supervised,
                              task_loss, zipped)
from tests.helpers import state_equal


def data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return as_dataset(x, (x[:, 0] > 0).long())


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_training_learns_and_is_bitwise_repeatable(optimizer):
    d = data()
    kw = dict(epochs=15, batch_size=16, lr=0.05 if optimizer == "sgd" else 0.01, optimizer=optimizer, seed=1)
    a, b = expunge.train(net(), d, **kw), expunge.train(net(), d, **kw)
    assert state_equal(a, b)
    acc = (a(d.x).argmax(1) == d.y).float().mean()
    assert acc > 0.9


def test_train_returns_a_copy_and_records_the_recipe():
    m = net()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    out = expunge.train(m, data(), epochs=2, lr=0.1, seed=0)
    assert out is not m and all(torch.equal(before[k], m.state_dict()[k]) for k in before)
    rec = expunge.provenance(out).recipe
    assert rec["epochs"] == 2 and rec["lr"] == 0.1


def test_global_rng_is_untouched():
    m, d = net(), data()
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    expunge.train(m, d, epochs=1, seed=5)
    assert torch.equal(torch.rand(1), expected)


@pytest.mark.parametrize("schedule, at_half", [("constant", 1.0), ("cosine", 0.5), ("linear", 0.5), ("step", 0.1)])
def test_schedules(schedule, at_half):
    r = Recipe(epochs=10, schedule=schedule, step_size=5, gamma=0.1)
    assert r.lr_factor(0.0) == pytest.approx(1.0)
    assert r.lr_factor(0.5) == pytest.approx(at_half)


def test_warmup_ramps_up():
    r = Recipe(warmup=0.2, schedule="constant")
    assert r.lr_factor(0.1) == pytest.approx(0.5, rel=1e-6) and r.lr_factor(0.3) == 1.0


@pytest.mark.parametrize("bad", [dict(lr=-1.0), dict(epochs=-1), dict(optimizer="rmsprop"), dict(schedule="cyclic"),
                                 dict(momentum=1.5), dict(batch_size=0), dict(loss="hinge")])
def test_bad_recipe_values_name_the_setting(bad):
    key = next(iter(bad))
    with pytest.raises(ValueError, match=key):
        Recipe(**bad)
    with pytest.raises(ValueError, match="unknown training setting"):
        Recipe.from_dict({"learning_rate": 0.1})


def test_divergence_is_stopped_with_method_epoch_and_step():
    d = data()

    def exploding(model, batch, ctx):
        out = model(batch["data"].x).sum()
        return out * (float("inf") if ctx.step == 3 else 1.0)

    with pytest.raises(DivergenceError, match=r"ga-test: loss became .* at epoch 1, step 4"):
        fit(net(), batches(d, 8), recipe=Recipe(epochs=2), loss_fn=exploding, name="ga-test")


def test_plans_zip_cycle_and_chain():
    big, small_ = data(40), data(8, seed=1)
    g = torch.Generator().manual_seed(0)
    z = zipped(("retain", big, 10), ("forget", small_, 4))(0, g)
    assert len(z) == 4 and all(len(b["retain"]) == 10 and len(b["forget"]) == 4 for b in z)
    c = chain(batches(small_, 4, name="forget", tag="max"), batches(big, 20, name="retain", tag="min"))(0, g)
    assert [b.tag for b in c] == ["max", "max", "min", "min"]


def test_labels_are_read_only_when_a_loss_asks():
    class NoLabels(type(data())):
        @property
        def y(self):
            raise AssertionError("labels were read")

        @y.setter
        def y(self, value):
            pass

    d = data()
    blind = NoLabels(d.x, d.y)
    plan = batches(blind, 16)
    fit(net(), plan, recipe=Recipe(epochs=1), loss_fn=lambda m, b, c: m(b["data"].x).pow(2).mean())
    with pytest.raises(AssertionError, match="labels were read"):
        fit(net(), plan, recipe=Recipe(epochs=1))


def test_weight_pins_survive_momentum_and_weight_decay():
    m = net()
    anchor = {k: v.detach().clone() for k, v in m.named_parameters()}
    g = torch.Generator().manual_seed(0)
    masks = {k: torch.rand(v.shape, generator=g) > 0.5 for k, v in anchor.items()}
    fit(m, batches(data(), 16), recipe=Recipe(epochs=3, momentum=0.9, weight_decay=0.1),
        step_hooks=[pin_weights(masks, anchor)])
    for k, p in m.named_parameters():
        assert torch.equal(p[~masks[k]], anchor[k][~masks[k]])
    moved = torch.cat([(p - anchor[k])[masks[k]].flatten() for k, p in m.named_parameters()])
    assert bool((moved != 0).any())


def test_gradient_masks_only_touch_gradients():
    m = net()
    anchor = {k: v.detach().clone() for k, v in m.named_parameters()}
    zero = {k: torch.zeros_like(v) for k, v in anchor.items()}
    fit(m, batches(data(), 16), recipe=Recipe(epochs=2, momentum=0.0, weight_decay=0.0),
        grad_hooks=[mask_gradients(zero)])
    assert all(torch.equal(p, anchor[k]) for k, p in m.named_parameters())


def test_clipping_bounds_the_step():
    m = net()
    before = [p.detach().clone() for p in m.parameters()]
    fit(m, batches(data(8), 8), recipe=Recipe(epochs=1, lr=1.0, momentum=0.0, weight_decay=0.0,
                                                clip_grad_norm=1e-3))
    step = math.sqrt(sum(float(((p.detach() - b) ** 2).sum()) for p, b in zip(m.parameters(), before)))
    assert step <= 1e-3 + 1e-6


def test_tagged_batches_get_their_own_optimiser():
    """With ``tag_lr`` each tag has its own optimiser state: steps tagged "a" at factor 0 move nothing, and the
    momentum of the "b" steps is exactly that of training on the "b" batches alone."""
    from expunge.training import Batch

    d = data()
    base = batches(d, 16, tag="b")

    def alternating(epoch, g):
        return [Batch(b.parts, tag) for b in base(epoch, g) for tag in ("a", "b")]

    recipe = Recipe(epochs=3, lr=0.1, momentum=0.9, weight_decay=0.0, schedule="constant")
    both = fit(net(), alternating, recipe=recipe, seed=0, tag_lr={"a": 0.0})
    alone = fit(net(), base, recipe=recipe, seed=0)
    assert state_equal(both, alone)
    shared = fit(net(), alternating, recipe=recipe, seed=0)
    assert not state_equal(shared, alone)


def test_bad_settings_and_an_empty_partner_are_refused():
    d = data()
    recipe = Recipe(epochs=1, lr=0.1)
    for bad in (-1.0, float("nan"), "fast"):
        with pytest.raises(ValueError, match=r"tag_lr\['a'\]"):
            fit(net(), batches(d, 16), recipe=recipe, tag_lr={"a": bad})
    with pytest.raises(TypeError, match="recipe must be an expunge.training.Recipe; got dict"):
        fit(net(), batches(d, 16), recipe={"epochs": 1})
    with pytest.raises(ValueError, match="loss='hinge' is not allowed"):
        fit(net(), batches(d, 16), recipe=recipe, loss_fn=supervised(task_loss("hinge", "classification")))
    with pytest.raises(ValueError, match="'retain' data is empty"):
        zipped(("forget", d, 8), ("retain", Subset(d, []), 8))
