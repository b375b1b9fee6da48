"""RMU, UOE and WAGLE: each loss on a fixed batch against its formula computed independently, the weights each
method may move (and only those), WAGLE's attribution score by hand, and argument checks."""
from __future__ import annotations

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import expunge  # noqa: E402
from expunge.data.datasets import resolve  # noqa: E402
from expunge.methods._wagle import GAMMA, wagle_masks, wagle_scores  # noqa: E402
from expunge.methods.base import clone  # noqa: E402
from expunge.methods.grad_diff import grad_diff_loss  # noqa: E402
from expunge.methods.rmu import RMU, activation_loss, activations, control_vector, rmu_loss  # noqa: E402
from expunge.methods.uoe import UOE, expert_affinity, moe_blocks, router_anchor_loss, uoe_loss  # noqa: E402
from expunge.methods.wagle import WAGLE  # noqa: E402

from tests.lm_helpers import tiny_moe_task, tiny_qa_task  # noqa: E402


def changed(a: torch.nn.Module, b: torch.nn.Module) -> set[str]:
    sb = b.state_dict()
    return {k for k, v in a.state_dict().items() if not torch.equal(v, sb[k])}


def rows(dataset):
    base, idx = resolve(dataset)
    return base.x[idx], base.y[idx]


# --- RMU ------------------------------------------------------------------------------------------------------

def test_activation_loss_equals_its_formula_by_hand():
    g = torch.Generator().manual_seed(0)
    h, t = torch.randn(3, 5, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    mask = torch.tensor([[0, 1, 1, 0, 0], [1, 1, 1, 1, 0], [0, 0, 0, 1, 1]], dtype=torch.bool)
    per_sequence = []
    for b in range(3):
        total, count = 0.0, 0
        for s in range(5):
            if mask[b, s]:
                total += sum(float((h[b, s, d] - t[b, s, d]) ** 2) for d in range(4)) / 4
                count += 1
        per_sequence.append(total / count)
    assert float(activation_loss(h, t, mask)) == pytest.approx(sum(per_sequence) / 3, rel=1e-6)


def test_rmu_loss_is_forget_steering_plus_alpha_retain_distance():
    g = torch.Generator().manual_seed(1)
    hf, hr, href = (torch.randn(2, 4, 3, generator=g) for _ in range(3))
    mf = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]], dtype=torch.bool)
    mr = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    control = torch.tensor([0.5, -1.0, 2.0])
    expected = activation_loss(hf, control.expand(2, 4, 3), mf) + 7.0 * activation_loss(hr, href, mr)
    assert torch.allclose(rmu_loss(hf, mf, hr, href, mr, control, alpha=7.0), expected)


def test_control_vector_is_a_seeded_nonnegative_direction_of_length_c():
    u = control_vector(32, 20.0, seed=0)
    assert float(u.norm()) == pytest.approx(20.0, rel=1e-6) and bool((u >= 0).all())
    assert torch.equal(u, control_vector(32, 20.0, seed=0))
    assert not torch.equal(u, control_vector(32, 20.0, seed=1))


def test_rmu_moves_only_the_down_projections_up_to_its_layer_and_steers_forget_activations():
    task = tiny_qa_task()
    args = {"epochs": 6, "batch_size": 4, "lr": 1e-2, "alpha": 10.0, "steering_coefficient": 10.0}
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="rmu", seed=0, **args)
    assert changed(out, task.original) == {"hf.model.layers.0.mlp.down_proj.weight",
                                           "hf.model.layers.1.mlp.down_proj.weight"}
    only0 = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="rmu", seed=0,
                            **{**args, "layer": 0, "epochs": 1})
    assert changed(only0, task.original) == {"hf.model.layers.0.mlp.down_proj.weight"}
    x, y = rows(task.forget)
    target = control_vector(int(out.config.hidden_size), 10.0, seed=0).expand(*x.shape, -1)
    with torch.no_grad():
        before = activation_loss(activations(task.original, x, 1), target, y != -100)
        after = activation_loss(activations(out, x, 1), target, y != -100)
    assert float(after) < 0.8 * float(before)


def test_rmu_trainable_all_moves_more_than_the_down_projections():
    task = tiny_qa_task()
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="rmu", seed=0, epochs=1,
                          batch_size=4, trainable="all")
    assert "hf.model.layers.0.self_attn.q_proj.weight" in changed(out, task.original)


def test_rmu_with_lora_trains_the_adapters_and_merges_them():
    pytest.importorskip("peft")
    task = tiny_qa_task()
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="rmu", seed=0, epochs=2,
                          batch_size=4, lora={"r": 2})
    moved = changed(out, task.original)
    assert moved and all(n.endswith(("q_proj.weight", "v_proj.weight")) for n in moved)


@pytest.mark.parametrize("bad, argument", [({"layer": -1}, "layer"), ({"steering_coefficient": 0.0}, "steering"),
                                           ({"alpha": -1.0}, "alpha"), ({"trainable": "attention"}, "trainable")])
def test_rmu_refuses_bad_arguments(bad, argument):
    with pytest.raises(ValueError, match=rf"'rmu'.*{argument}"):
        RMU(**bad)


def test_rmu_refuses_a_layer_the_model_does_not_have():
    task = tiny_qa_task()
    with pytest.raises(ValueError, match=r"'rmu': layer=5 is not allowed; this model has decoder layers 0\.\.1"):
        expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="rmu", layer=5)


def hand_activation_loss(h, target, labels):
    """Mean over sequences of (Σ over labelled positions of mean_d (h − target)²) / (number of labelled positions)."""
    per_sequence = []
    for b in range(h.shape[0]):
        positions = [t for t in range(h.shape[1]) if int(labels[b, t]) != -100]
        per_sequence.append(sum(((h[b, t].double() - target[b, t].double()) ** 2).mean() for t in positions)
                            / len(positions))
    return sum(per_sequence) / len(per_sequence)


def test_one_sgd_step_of_rmu_follows_the_gradient_of_the_formula():
    """layer=0: one plain SGD step at lr 1 over the whole forget and retain sets moves layer 0's down-projection (the
    one trained weight) by minus the gradient of A(h_f, c·u) + α·A(h_r, h_ref), h the residual stream after layer 0
    as transformers' hidden_states report it, and moves nothing else."""
    from expunge.methods.base import clone

    task = tiny_qa_task()
    coefficient, alpha = 6.0, 3.0
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="rmu", seed=0, epochs=1,
                          layer=0, steering_coefficient=coefficient, alpha=alpha, lr=1.0, batch_size=64,
                          optimizer="sgd", momentum=0.0, weight_decay=0.0, warmup=0.0, schedule="constant",
                          clip_grad_norm=None)
    model = clone(task.original).train()
    reference = clone(task.original).eval().requires_grad_(False)
    (xf, yf), (xr, yr) = rows(task.forget), rows(task.retain)

    def after_layer_0(m, x):
        return m.hf(input_ids=x, output_hidden_states=True, use_cache=False).hidden_states[1]

    target = control_vector(int(model.config.hidden_size), coefficient, seed=0).expand(*xf.shape, -1)
    with torch.no_grad():
        reference_h = after_layer_0(reference, xr)
    loss = (hand_activation_loss(after_layer_0(model, xf), target, yf)
            + alpha * hand_activation_loss(after_layer_0(model, xr), reference_h, yr))
    loss.backward()
    trained = "hf.model.layers.0.mlp.down_proj.weight"
    assert changed(out, task.original) == {trained}
    moved, grad = dict(out.named_parameters())[trained], dict(model.named_parameters())[trained].grad
    step = (dict(task.original.named_parameters())[trained] - moved).detach().double()
    assert float(grad.abs().max()) > 0
    assert torch.allclose(step, grad.double(), rtol=1e-3, atol=2e-5)


@pytest.mark.parametrize("method, task_of, args", [
    ("rmu", tiny_qa_task, {"epochs": 2, "batch_size": 8}),
    ("uoe", tiny_moe_task, {"epochs": 2, "batch_size": 8}),
])
def test_methods_that_train_some_weights_leave_no_gradients_and_restore_requires_grad(method, task_of, args):
    """The weights outside the optimiser do not require a gradient while the method runs, so they collect none,
    and the returned model carries no .grad at all; its requires_grad flags are the original's."""
    from expunge.methods import get

    task = task_of()
    seen: dict[str, bool] = {}
    instance = get(method)(**args)
    real = instance.fit_language

    def spying_fit(model, *a, **kw):
        seen.update({k: p.requires_grad for k, p in model.named_parameters()})
        return real(model, *a, **kw)

    instance.fit_language = spying_fit
    out = instance.unlearn(task.original, forget=task.forget, retain=task.retain, seed=0)
    assert seen and sum(seen.values()) < len(seen) / 2          # only the trained weights required a gradient
    moved = changed(out, task.original)
    assert moved and all(seen[k] for k in moved)
    assert all(p.grad is None for p in out.parameters())
    assert all(p.requires_grad for p in out.parameters())


# --- UOE ------------------------------------------------------------------------------------------------------

def test_uoe_anchor_changes_nothing_under_top1_routing_so_the_grid_leaves_it_out():
    from tests.helpers import state_equal

    task = tiny_moe_task()
    runs = [UOE(epochs=2, batch_size=8, anchor=anchor).unlearn(task.original, forget=task.forget, retain=task.retain,
                                                               seed=0) for anchor in (0.0, 10.0)]
    assert state_equal(runs[0], runs[1]) and not state_equal(runs[0], task.original)
    assert "anchor" not in UOE.grid and {"lr", "epochs", "alpha"} <= set(UOE.grid)

def test_router_anchor_loss_equals_its_formula_by_hand():
    g = torch.Generator().manual_seed(2)
    z, z0 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    mask = torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool)
    by_hand = sum(sum(float((z[t, e] - z0[t, e]) ** 2) for e in range(4)) / 4 for t in range(6) if mask[t]) / 4
    assert float(router_anchor_loss(z, z0, mask)) == pytest.approx(by_hand, rel=1e-6)


def test_uoe_loss_is_grad_diff_plus_the_weighted_anchor():
    g = torch.Generator().manual_seed(3)
    lf, lr = torch.randn(2, 5, 7, generator=g), torch.randn(2, 5, 7, generator=g)
    yf = torch.tensor([[-100, -100, 3, 4, 1], [-100, 2, 2, 6, -100]])
    yr = torch.tensor([[-100, 0, 5, -100, -100], [-100, -100, 1, 1, 3]])
    z, z0 = torch.randn(20, 4, generator=g), torch.randn(20, 4, generator=g)
    mask = torch.cat([(yf != -100).reshape(-1), (yr != -100).reshape(-1)])
    expected = grad_diff_loss(lf, yf, lr, yr, alpha=2.0) + 0.3 * router_anchor_loss(z, z0, mask)
    assert torch.allclose(uoe_loss(lf, yf, lr, yr, z, z0, mask, alpha=2.0, anchor=0.3), expected)


def test_expert_affinity_matches_the_routers_own_logits():
    """The affinity (mean router probability over forget answer tokens) from hooks equals the one computed from the
    router logits transformers itself returns."""
    task = tiny_moe_task()
    x, y = rows(task.forget)
    with torch.no_grad():
        logits = task.original.hf(input_ids=x, output_router_logits=True, use_cache=False).router_logits
    keep = (y != -100).reshape(-1)
    affinity = expert_affinity(task.original, task.forget)
    assert sorted(affinity) == [0, 1]
    for layer, z in enumerate(logits):
        assert torch.allclose(affinity[layer], F.softmax(z.float(), -1)[keep].mean(0), atol=1e-6)


def test_uoe_changes_only_the_chosen_experts_slice():
    task = tiny_moe_task()
    method = UOE(epochs=4, batch_size=4, lr=3e-3, alpha=2.0)
    out = method.unlearn(task.original, forget=task.forget, retain=task.retain, seed=0)
    layer, expert = method.target
    affinity = expert_affinity(task.original, task.forget)
    assert float(affinity[layer][expert]) == max(float(a.max()) for a in affinity.values())
    prefix = f"hf.model.layers.{layer}.mlp.experts."
    assert changed(out, task.original) <= {prefix + "gate_up_proj", prefix + "down_proj",
                                           f"hf.model.layers.{layer}.mlp.gate.weight"}
    before, after = task.original.state_dict(), out.state_dict()
    for name in ("gate_up_proj", "down_proj"):
        others = [e for e in range(before[prefix + name].shape[0]) if e != expert]
        assert torch.equal(after[prefix + name][others], before[prefix + name][others])
        assert not torch.equal(after[prefix + name][expert], before[prefix + name][expert])
    # top-1 routing: the router gets no gradient from the NLL terms and is left as it was
    assert torch.equal(after[f"hf.model.layers.{layer}.mlp.gate.weight"],
                       before[f"hf.model.layers.{layer}.mlp.gate.weight"])


def test_uoe_anchor_holds_a_top2_router_near_the_original():
    """Under top-2 routing the router of the target layer trains; the anchor keeps it closer to the original."""
    task = tiny_moe_task()
    model = expunge.lm.moe(task.tokenizer, hidden=32, layers=2, heads=2, experts=4, top_k=2, max_positions=64, seed=1)
    drift = {}
    for anchor in (0.0, 10.0):
        method = UOE(epochs=3, batch_size=4, lr=1e-2, anchor=anchor)
        out = method.unlearn(model, forget=task.forget, retain=task.retain, seed=0)
        layer, _ = method.target
        gate = f"hf.model.layers.{layer}.mlp.gate.weight"
        assert gate in changed(out, model)
        drift[anchor] = float((out.state_dict()[gate] - model.state_dict()[gate]).norm())
    assert drift[10.0] < 0.5 * drift[0.0]


def test_uoe_layer_argument_picks_the_expert_within_that_layer():
    task = tiny_moe_task()
    method = UOE(epochs=1, batch_size=8, layer=1)
    method.unlearn(task.original, forget=task.forget, retain=task.retain, seed=0)
    assert method.target == (1, int(expert_affinity(task.original, task.forget)[1].argmax()))


def test_uoe_refuses_a_model_without_experts():
    task = tiny_qa_task()
    assert moe_blocks(task.original) == {}
    with pytest.raises(ValueError, match=r"'uoe' unlearns mixture-of-experts models .*LlamaForCausalLM has none"):
        expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="uoe")


@pytest.mark.parametrize("bad, argument", [({"anchor": -1.0}, "anchor"), ({"alpha": -0.5}, "alpha"),
                                           ({"layer": -2}, "layer"), ({"mask": "wagle"}, "mask"),
                                           ({"lora": {"r": 2}}, "lora")])
def test_uoe_refuses_bad_arguments(bad, argument):
    with pytest.raises(ValueError, match=rf"'uoe'.*{argument}"):
        UOE(**bad)


def test_uoe_refuses_a_layer_without_experts():
    task = tiny_moe_task()
    with pytest.raises(ValueError, match=r"'uoe': layer=3 is not allowed; the mixture-of-experts layers"):
        expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="uoe", layer=3)


# --- WAGLE ----------------------------------------------------------------------------------------------------

def test_wagle_score_equals_its_formula_computed_independently():
    """|(θ − ∇ℓ_r/γ) ⊙ ∇ℓ_f| with each gradient taken in one pass over the whole set (the transformers loss)."""
    task = tiny_qa_task()
    model = clone(task.original)
    params = dict(model.named_parameters())

    def grads(data):
        x, y = rows(data)
        logits = model(x)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), y[:, 1:].reshape(-1), ignore_index=-100)
        return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))

    gf, gr = grads(task.forget), grads(task.retain)
    scores = wagle_scores(model, task.forget, task.retain)
    for n, p in params.items():
        expected = ((p.detach() - gr[n] / GAMMA) * gf[n]).abs()
        assert torch.allclose(scores[n], expected, rtol=1e-3, atol=1e-3 * float(expected.max())), n
    masks = wagle_masks(model, task.forget, task.retain, ratio=0.3, seed=0)
    total = sum(p.numel() for p in params.values())
    assert int(sum(m.sum() for m in masks.values())) == round(0.3 * total)
    kept = torch.cat([scores[n][masks[n].bool()] for n in params])
    dropped = torch.cat([scores[n][~masks[n].bool()] for n in params])
    assert float(kept.min()) >= float(dropped.max())
    assert all(torch.equal(masks[n], m) for n, m in wagle_masks(model, task.forget, task.retain, ratio=0.3,
                                                                  seed=5).items())


def test_wagle_mask_needs_retain_data():
    task = tiny_qa_task()
    with pytest.raises(ValueError, match="mask='wagle' needs retain data"):
        wagle_masks(task.original, task.forget, None, ratio=0.5, seed=0)


def test_wagle_updates_only_the_selected_weights():
    task = tiny_qa_task()
    masks = wagle_masks(task.original, task.forget, task.retain, ratio=0.2, seed=0)
    for method, args in (("wagle", {}), ("grad_diff", {"mask": "wagle"})):
        out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=method, seed=0,
                              epochs=2, batch_size=4, mask_ratio=0.2, **args)
        before, after = dict(task.original.named_parameters()), dict(out.named_parameters())
        moved = 0
        for n, m in masks.items():
            frozen = ~m.bool()
            assert torch.equal(after[n][frozen], before[n][frozen]), f"{method}: {n} moved outside the mask"
            moved += int((after[n] != before[n]).sum())
        assert 0 < moved <= sum(int(m.sum()) for m in masks.values())


def test_wagle_with_npo_forgets():
    task = tiny_qa_task()
    from tests.lm_helpers import answer_nll

    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="wagle", seed=0,
                          objective="npo", epochs=10, batch_size=4, mask_ratio=0.5)
    assert answer_nll(out, task.forget) > answer_nll(task.original, task.forget) + 1.0


@pytest.mark.parametrize("bad, argument", [({"mask": None}, "mask"), ({"objective": "rmu"}, "objective"),
                                           ({"mask_ratio": 0.0}, "mask_ratio"), ({"beta": 0.0}, "beta")])
def test_wagle_refuses_bad_arguments(bad, argument):
    with pytest.raises(ValueError, match=rf"'wagle'.*{argument}"):
        WAGLE(**bad)
