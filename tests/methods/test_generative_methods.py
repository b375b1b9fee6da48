"""Behaviour of the diffusion unlearning methods beyond the conformance table: RL's substitute classes, SalUn's mask
held on the weights, ESD's choice of trained parameters and its data-free loss, pruning before recovery."""
from __future__ import annotations

import pytest

pytest.importorskip("diffusers")

import torch  # noqa: E402

import expunge  # noqa: E402
from expunge.methods import registered  # noqa: E402
from expunge.methods.base import prunable  # noqa: E402
from expunge.methods.gen_rl import substitute_classes  # noqa: E402
from expunge.methods.gen_salun import diffusion_saliency  # noqa: E402
from expunge.methods.salun import top_fraction_mask  # noqa: E402

from tests.gen_helpers import tiny_generation_task  # noqa: E402


def test_next_class_is_the_next_one_not_forgotten():
    y = torch.tensor([1, 3, 1])
    assert substitute_classes(y, 4, [1], "next").tolist() == [2, 0, 2]
    assert substitute_classes(torch.tensor([1, 2]), 4, [1, 2], "next").tolist() == [3, 3]
    assert substitute_classes(torch.tensor([3]), 4, [3, 0], "next").tolist() == [1]


def test_random_substitutes_are_retained_classes_and_seeded():
    y = torch.full((2000,), 1)
    torch.manual_seed(0)
    a = substitute_classes(y, 4, [1, 2], "random")
    torch.manual_seed(0)
    b = substitute_classes(y, 4, [1, 2], "random")
    assert torch.equal(a, b)
    assert set(a.tolist()) == {0, 3}
    with pytest.raises(ValueError, match="every class is being forgotten"):
        substitute_classes(y, 2, [0, 1], "random")


def test_gen_salun_moves_only_the_salient_weights():
    task = tiny_generation_task()
    ratio = 0.2
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="gen_salun", seed=0,
                          epochs=1, lr=1e-3, mask_ratio=ratio)
    masks = top_fraction_mask(diffusion_saliency(task.original, task.forget, 64, seed=0), ratio)
    before, after = dict(task.original.named_parameters()), dict(out.named_parameters())
    moved = total = 0
    for name, keep in masks.items():
        frozen = ~keep
        assert torch.equal(after[name][frozen], before[name][frozen]), f"{name} moved outside the saliency mask"
        moved += int((after[name] != before[name]).sum())
        total += keep.numel()
    assert 0.5 * ratio * total < moved <= ratio * total


def test_saliency_is_seeded_and_ranks_every_parameter():
    task = tiny_generation_task()
    a = diffusion_saliency(task.original, task.forget, 64, seed=0)
    b = diffusion_saliency(task.original, task.forget, 64, seed=0)
    c = diffusion_saliency(task.original, task.forget, 64, seed=1)
    assert set(a) == {n for n, _ in task.original.named_parameters()}
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)


def test_esd_reads_no_retain_data():
    task = tiny_generation_task()
    out = expunge.unlearn(task.original, forget=task.forget, method="esd", seed=0, epochs=1, batch_size=32,
                          ddim_steps=5)
    assert not all(torch.equal(a, b) for a, b in zip(out.parameters(), task.original.parameters()))


def test_esd_cross_attention_needs_cross_attention():
    task = tiny_generation_task()
    with pytest.raises(ValueError, match="params='cross_attention' .* needs a UNet with cross-attention"):
        expunge.unlearn(task.original, forget=task.forget, method="esd", params="cross_attention")


@pytest.mark.parametrize("params", ["cross_attention", "non_cross_attention"])
def test_esd_variants_train_their_parameters_on_a_text_unet(params):
    pytest.importorskip("transformers")
    task = tiny_generation_task()
    model = expunge.gen.text_unet(["zero", "one", "two", "three"], widths=(16, 32), seed=0)
    out = registered()["esd"](params=params, epochs=1, batch_size=32, ddim_steps=3, lr=1e-2).unlearn(
        model, forget=task.forget, seed=0)
    before = dict(model.named_parameters())
    changed = {n for n, p in out.named_parameters() if not torch.equal(p, before[n])}
    cross = {n for n in before if n.startswith("unet.") and ".attn2." in n}
    assert changed, "nothing trained"
    assert not any(n.startswith("conditioner.") for n in changed), "the text encoder must stay frozen"
    assert changed <= cross if params == "cross_attention" else not changed & cross


@pytest.mark.parametrize("name", ["gen_finetune", "gen_ga", "gen_rl", "gen_salun", "esd", "sfd"])
def test_prune_dense_then_recover_keeps_the_zeros(name):
    task = tiny_generation_task()
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=name, seed=0,
                          epochs=1, lr=1e-3, prune_dense_then_recover=0.5)
    weights = prunable(out)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert zeros >= 0.5 * sum(w.numel() for w in weights.values()) - 1
