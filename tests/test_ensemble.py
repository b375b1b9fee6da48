"""Batched ensembles: members equal models trained alone, masks are balanced, clipping is per member, members
round-trip, and bad input is refused."""
from __future__ import annotations

import doctest

import pytest
import torch
from torch.utils.data import Subset

import expunge
import expunge.ensemble as E
import expunge.ensemble.masks
from expunge.data import digits
from expunge.metrics import predict
from tests.helpers import state_equal

RECIPE = dict(epochs=3, lr=0.05, batch_size=64, momentum=0.9, weight_decay=5e-4, schedule="cosine")
# Tolerance for members against models trained alone; why 1e-4: test_oracles_match_retrain_one_by_one.
TOL = 1e-4


@pytest.fixture(scope="module")
def setup():
    train, test = digits()
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    original = expunge.train(expunge.model("mlp", train, hidden=[64], seed=0), train, seed=0, **RECIPE)
    return train, test, forget, retain, original


def max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_oracles_match_retrain_one_by_one(setup, optimizer):
    """K oracles trained together equal ``expunge.unlearn(method="retrain", seed=s)`` to within TOL = 1e-4.

    Not bitwise: the same arithmetic runs as batched matrix products (bmm over members) instead of one product per
    model, and the optimiser runs fused, so sums are taken in a different order and results differ in the last
    bits; training carries those differences forward. In these tests (digits, 2-3 epochs) the largest parameter
    difference measured is 1.6e-7 (Adam; 6e-8 with SGD). 1e-4 leaves a margin of about 1000x for other CPUs and
    BLAS builds and stays far below what a wrong batch order, seed or gradient gives (1e-3 to 1e-1 here; members
    with different seeds differ by 0.7). Longer runs drift further, because SGD amplifies rounding differences:
    up to 2e-3 after the 30-epoch demo recipe (benchmarks/ensembles.py), so the tolerance is one for short runs.
    """
    train, test, forget, retain, original = setup
    kw = {} if optimizer == "sgd" else {"optimizer": "adam", "lr": 0.01}
    seeds = [3, 0, 7]
    ens = E.unlearn(original, forget=forget, retain=retain, method="retrain", seeds=seeds, **kw)
    alone = [expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=s, **kw) for s in seeds]
    for i, model in enumerate(alone):
        member = ens.member(i)
        assert type(member) is type(model)
        assert max_diff(member, model) < TOL
        rec, ref = expunge.provenance(member), expunge.provenance(model)
        assert (rec.method, rec.seed, rec.history, rec.recipe) == (ref.method, ref.seed, ref.history, ref.recipe)
    assert max_diff(alone[0], alone[1]) > 1e-2          # seeds matter, so the comparison above can fail
    logits = ens.predict(test)
    assert logits.shape == (3, len(test), 10)
    for i, model in enumerate(alone):
        assert torch.allclose(logits[i], predict(model, test), atol=1e-3)


def test_shadow_models_match_train_on_their_halves(setup):
    """Members trained on half masks equal ``expunge.train`` of the same initialisation on the same half."""
    train, *_ = setup
    template = expunge.model("mlp", train, hidden=[64], seed=0)
    seeds = [0, 1, 2, 3]
    masks = E.half_masks(4, len(train), seed=1)
    ens = E.train(template, train, seeds=seeds, masks=masks, **RECIPE)
    for i, s in enumerate(seeds):
        half = Subset(train, masks[i].nonzero().flatten().tolist())
        alone = expunge.train(expunge.model("mlp", train, hidden=[64], seed=s), half, seed=s, **RECIPE)
        member = ens.member(i)
        assert max_diff(member, alone) < TOL
        rec, ref = expunge.provenance(member), expunge.provenance(alone)
        assert rec.data_fingerprint == ref.data_fingerprint and rec.recipe == ref.recipe and rec.seed == s
        assert rec.architecture == ref.architecture
    assert ens.trained_on(2).indices == masks[2].nonzero().flatten().tolist()


def test_finetune_runs_vectorised_and_other_methods_one_by_one(setup):
    train, test, forget, retain, original = setup
    seeds = [0, 1]
    ens = E.unlearn(original, forget=forget, retain=retain, method="finetune", seeds=seeds, epochs=2)
    for i, s in enumerate(seeds):
        alone = expunge.unlearn(original, forget=forget, retain=retain, method="finetune", seed=s, epochs=2)
        assert max_diff(ens.member(i), alone) < TOL
    ga = E.unlearn(original, forget=forget, method="gradient_ascent", seeds=seeds, epochs=1)
    for i, s in enumerate(seeds):
        alone = expunge.unlearn(original, forget=forget, method="gradient_ascent", seed=s, epochs=1)
        assert state_equal(ga.member(i), alone)          # run by expunge.unlearn itself, so bitwise equal
        assert expunge.provenance(ga.member(i)).method == "gradient_ascent"


def test_per_member_retain_sets(setup):
    """U-LiRA style: each member has its own original and retain set (equal sizes, one base dataset)."""
    train, *_ = setup
    masks = E.half_masks(2, len(train), seed=0)
    halves = [Subset(train, m.nonzero().flatten().tolist()) for m in masks]
    originals = [expunge.train(expunge.model("mlp", train, hidden=[64], seed=s), h, seed=s, **RECIPE)
                 for s, h in zip([0, 1], halves)]
    splits = [expunge.split_forget(h, fraction=0.1, seed=s) for s, h in zip([0, 1], halves)]
    forgets, retains = [f for f, _ in splits], [r for _, r in splits]
    ens = E.unlearn(originals, forget=forgets, retain=retains, method="retrain", seeds=[5, 6])
    for i, s in enumerate([5, 6]):
        alone = expunge.unlearn(originals[i], forget=forgets[i], retain=retains[i], method="retrain", seed=s)
        assert max_diff(ens.member(i), alone) < TOL


def test_clipping_is_per_member():
    """The grad hook scales each member's gradient exactly as clip_grad_norm_ scales that model's alone."""
    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3)) for _ in range(3)]
    x = torch.randn(3, 8, 5)
    scales = torch.tensor([1e-4, 1.0, 1e2])                  # gradient norms far below and above the limit
    grads_alone, norms = [], []
    for i, m in enumerate(models):
        (m(x[i]) ** 2).sum().mul(scales[i]).backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)))
        grads_alone.append([p.grad.clone() for p in m.parameters()])
    assert norms[0] < 1.0 < norms[2]
    ens = E.Ensemble(models)
    ((ens(x) ** 2).sum(dim=(1, 2)) * scales).sum().backward()
    E.clip_members(1.0)(ens)
    params, _ = ens.stacked()
    for i in range(3):
        for name, g in zip(params, grads_alone[i]):
            stored = getattr(ens, name.replace(".", "/")).grad
            got = stored.transpose(-1, -2)[i] if name in ens.transposed else stored[i]
            assert torch.allclose(got, g, rtol=1e-5, atol=1e-6 * float(g.abs().max()))
    total = torch.stack([p.grad.flatten(1).norm(dim=1) for p in ens.parameters()]).norm(dim=0)
    assert torch.allclose(total, torch.tensor([min(n, 1.0) for n in norms]), rtol=1e-5)


def test_clipped_training_matches_alone(setup):
    train, *_ = setup
    template = expunge.model("mlp", train, hidden=[64], seed=0)
    kw = {**RECIPE, "epochs": 2, "clip_grad_norm": 0.5}
    ens = E.train(template, train, seeds=[0, 1], **kw)
    for i in range(2):
        alone = expunge.train(expunge.model("mlp", train, hidden=[64], seed=i), train, seed=i, **kw)
        assert max_diff(ens.member(i), alone) < TOL
        unclipped = expunge.train(expunge.model("mlp", train, hidden=[64], seed=i), train, seed=i,
                                  **{**kw, "clip_grad_norm": None})
        assert max_diff(unclipped, alone) > 1e-3        # clipping was active


@pytest.mark.parametrize("name, kwargs", [("mlp", {"hidden": [16]}), ("cnn", {"width": 4})])
def test_members_round_trip(setup, name, kwargs):
    train, test, *_ = setup
    models = [expunge.train(expunge.model(name, train, seed=s, **kwargs), Subset(train, range(128)), seed=s,
                            epochs=1, lr=0.05) for s in range(3)]
    ens = E.Ensemble(models)
    assert len(ens) == 3 and ens.seeds == [0, 1, 2]
    for i, m in enumerate(models):
        back = ens.member(i)
        assert type(back) is type(m) and state_equal(back, m)        # buffers (batch-norm statistics) too
        assert expunge.provenance(back).to_dict() == expunge.provenance(m).to_dict()
        assert back is not m and not any(p.data_ptr() == q.data_ptr()
                                         for p, q in zip(back.parameters(), ens.parameters()))
    again = E.Ensemble(ens.members())
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), ens.state_dict().values()))
    logits = ens.predict(test)
    for i, m in enumerate(models):
        assert torch.allclose(logits[i], predict(m, test), atol=1e-5)
    assert ens.member(-1) is not None
    with pytest.raises(ValueError, match="out of range"):
        ens.member(3)


def test_half_masks_are_exactly_balanced_and_random():
    m = E.half_masks(16, 200, seed=0)
    assert m.dtype == torch.bool and m.shape == (16, 200)
    assert (m.sum(1) == 100).all() and (m.sum(0) == 8).all()
    assert torch.equal(m, E.half_masks(16, 200, seed=0)) and not torch.equal(m, E.half_masks(16, 200, seed=1))
    assert locked_pairs(m) < 0.01                      # columns neither identical nor complementary in bulk
    assert locked_pairs(E.half_masks(16, 200, seed=0, rounds=0)) > 0.4   # as they are before mixing
    odd = E.half_masks(8, 101, seed=0)                  # N odd: 50 each, 4 examples in 3 members, the rest in 4
    assert (odd.sum(1) == 50).all() and sorted(odd.sum(0).unique().tolist()) == [3, 4]
    assert int((odd.sum(0) == 3).sum()) == 4
    k_odd = E.half_masks(5, 10, seed=0)
    assert (k_odd.sum(1) == 5).all() and set(k_odd.sum(0).tolist()) <= {2, 3}


def locked_pairs(m: torch.Tensor) -> float:
    """The fraction of pairs of examples whose memberships are identical or complementary across members."""
    f = m.float() * 2 - 1
    agree = (f.T @ f / m.shape[0]).abs()
    return float(agree[torch.triu(torch.ones_like(agree, dtype=torch.bool), 1)].eq(1).float().mean())


def test_masks_doctest():
    result = doctest.testmod(expunge.ensemble.masks, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_bad_input_is_refused(setup):
    train, test, forget, retain, original = setup
    template = expunge.model("mlp", train, hidden=[16])
    masks = torch.zeros(2, len(train), dtype=torch.bool)
    masks[0, :10], masks[1, :12] = True, True
    with pytest.raises(ValueError, match="equally many examples"):
        E.train(template, train, seeds=[0, 1], masks=masks, epochs=1)
    with pytest.raises(ValueError, match=r"shape \[members, len\(data\)\]"):
        E.train(template, train, seeds=[0, 1], masks=masks[:, :5], epochs=1)
    with pytest.raises(ValueError, match="one seed per member"):
        E.fit_members([template, template], train, seeds=[0], recipe=expunge.Recipe(epochs=1))
    with pytest.raises(ValueError, match="integers"):
        E.train(template, train, seeds=[0.5], epochs=1)
    with pytest.raises(ValueError, match="share one architecture"):
        E.Ensemble([template, expunge.model("cnn", train, width=4)])
    with pytest.raises(ValueError, match="differently shaped"):
        E.Ensemble([template, expunge.model("mlp", train, hidden=[8])])
    with pytest.raises(ValueError, match="one per seed"):
        E.unlearn([original], forget=forget, retain=retain, method="retrain", seeds=[0, 1])
    with pytest.raises(ValueError, match="unknown method"):
        E.unlearn(original, forget=forget, retain=retain, method="nope", seeds=[0])
    with pytest.raises(ValueError, match="half_masks: n"):
        E.half_masks(4, 1)
