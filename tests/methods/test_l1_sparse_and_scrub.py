from __future__ import annotations

import torch

import expunge
from expunge.methods.l1_sparse import l1_coefficient
from expunge.methods.scrub import distill_kl


def test_l1_coefficient_decays_linearly_to_zero():
    assert l1_coefficient(1e-4, 0.0) == 1e-4
    assert abs(l1_coefficient(1e-4, 0.5) - 5e-5) < 1e-18
    assert l1_coefficient(1e-4, 1.0) == 0.0


def test_l1_penalty_makes_weights_smaller_than_plain_finetuning(task):
    args = dict(epochs=5, lr=0.05, weight_decay=0.0, momentum=0.0, seed=0)
    plain = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="finetune", **args)
    sparse = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="l1_sparse",
                             alpha=1e-3, **args)
    norm = lambda m: sum(float(p.detach().abs().sum()) for p in m.parameters())
    assert norm(sparse) < norm(plain)


def test_distill_kl_is_zero_for_identical_logits_and_positive_otherwise():
    a = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    assert float(distill_kl(a, a, 4.0)) < 1e-6
    assert float(distill_kl(a, a.flip(1), 4.0)) > 0


def test_scrub_with_no_max_steps_never_reads_the_forget_set(task):
    """msteps=0 leaves only min-steps on the retain set: changing the forget set changes nothing."""
    other = expunge.split_forget(task.train, indices=task.forget.indices[:10])[0]
    a = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="scrub", msteps=0, seed=1)
    b = expunge.unlearn(task.original, forget=other, retain=task.retain, method="scrub", msteps=0, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
