from __future__ import annotations

import torch
import torch.nn.functional as F

import expunge
from expunge.data.datasets import features
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


def test_distill_kl_is_t_squared_kl_from_teacher_to_student():
    """SCRUB's DistillKL: T²·KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch; the teacher's
    distribution comes first (the reverse divergence is a different number here)."""
    g = torch.Generator().manual_seed(0)
    student, teacher, t = torch.randn(8, 5, generator=g), 3 * torch.randn(8, 5, generator=g), 4.0
    p_s, p_t = F.softmax(student / t, dim=1), F.softmax(teacher / t, dim=1)
    forward = t ** 2 * (p_t * (p_t.log() - p_s.log())).sum(1).mean()
    reverse = t ** 2 * (p_s * (p_s.log() - p_t.log())).sum(1).mean()
    assert torch.allclose(distill_kl(student, teacher, t), forward, rtol=1e-5)
    assert abs(float(forward - reverse)) > 1e-2 * float(forward)


def test_scrub_with_no_max_steps_never_reads_the_forget_set(task):
    """msteps=0 leaves only min-steps on the retain set: changing the forget set changes nothing."""
    other = expunge.split_forget(task.train, indices=task.forget.indices[:10])[0]
    a = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="scrub", msteps=0, seed=1)
    b = expunge.unlearn(task.original, forget=other, retain=task.retain, method="scrub", msteps=0, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_scrub_max_steps_push_the_forget_outputs_away_from_the_teacher(task):
    """The first max-step pass starts at the teacher, where KL and its gradient vanish; after an epoch of min-steps
    the second max-step pass moves the student's forget outputs away (measured: KL 0.009 with one max-step epoch,
    0.026 with two). Minimising the KL there instead would bring them closer."""
    xf = features(task.forget)

    def forget_kl(msteps: int) -> float:
        out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="scrub", seed=0,
                              epochs=2, msteps=msteps, lr=0.05)
        with torch.no_grad():
            return float(distill_kl(out(xf), task.original(xf), 4.0))
    assert forget_kl(2) > 2 * forget_kl(1)
