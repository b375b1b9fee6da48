"""The "I don't know" family and the distillation method: idk_dpo, idk_nll, undial and flat.

Each loss on a fixed batch equals its formula computed independently (loops over sequences and positions with
plain torch ops); the refusal pairing is seeded and row-aligned; bad arguments name the method and the argument;
methods without a retain term run without retain data and never read it."""
from __future__ import annotations

import math

import pytest
import torch

from expunge.methods._idk import IDK_DRAW, idk_dataset, paired
from expunge.methods.flat import DIVERGENCES, answer_probability, flat_loss
from expunge.methods.idk_dpo import idk_dpo_loss
from expunge.methods.idk_nll import idk_nll_loss
from expunge.methods.undial import undial_loss

V = 7   # vocabulary of the hand-made batches


def fixed_batch(seed: int, prompt_lengths=(2, 3, 1), answer_lengths=(3, 2, 4), length: int = 8):
    """Logits [B, L, V] and labels [B, L]: -100 on each prompt and on the padding, token ids on the answer."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(len(prompt_lengths), length, V, generator=g) * 2
    labels = torch.full((len(prompt_lengths), length), -100)
    for i, (p, a) in enumerate(zip(prompt_lengths, answer_lengths)):
        labels[i, p:p + a] = torch.randint(0, V, (a,), generator=g)
    return logits, labels


def answer_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> list[list[float]]:
    """Per sequence, the log-probability of each labelled token given the logits one position before it."""
    out = []
    for seq_logits, seq_labels in zip(logits, labels):
        lps = []
        for t in range(1, len(seq_labels)):
            if seq_labels[t] != -100:
                lps.append(float(torch.log_softmax(seq_logits[t - 1].double(), -1)[seq_labels[t]]))
        out.append(lps)
    return out


# -- each loss on a fixed batch against its formula --------------------------------------------------------------

def test_idk_dpo_loss_matches_the_formula_by_hand():
    (idk, idk_y), (fg, fg_y) = fixed_batch(0), fixed_batch(1, answer_lengths=(4, 1, 2))
    ref_idk, ref_fg = fixed_batch(2)[0], fixed_batch(3)[0]
    beta = 0.1
    terms = []
    for i in range(len(idk)):
        d_idk = sum(answer_logprobs(idk, idk_y)[i]) - sum(answer_logprobs(ref_idk, idk_y)[i])
        d_f = sum(answer_logprobs(fg, fg_y)[i]) - sum(answer_logprobs(ref_fg, fg_y)[i])
        terms.append(-(2 / beta) * math.log(1 / (1 + math.exp(-beta * (d_idk - d_f)))))
    got = idk_dpo_loss(idk, idk_y, fg, fg_y, ref_idk, ref_fg, beta=beta)
    assert float(got) == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_idk_dpo_loss_is_2_over_beta_log_2_at_the_reference_and_falls_as_idk_gains():
    (idk, idk_y), (fg, fg_y) = fixed_batch(0), fixed_batch(1)
    at_reference = idk_dpo_loss(idk, idk_y, fg, fg_y, idk, fg, beta=0.5)
    assert float(at_reference) == pytest.approx(2 / 0.5 * math.log(2), rel=1e-6)
    sharper = idk.clone()
    for i in range(len(idk)):                 # raise the logit of every labelled idk token
        for t in range(1, idk.shape[1]):
            if idk_y[i, t] != -100:
                sharper[i, t - 1, idk_y[i, t]] += 3.0
    assert float(idk_dpo_loss(sharper, idk_y, fg, fg_y, idk, fg, beta=0.5)) < float(at_reference)


def test_idk_nll_loss_is_the_token_weighted_mean_of_both_batches():
    (idk, idk_y), (ret, ret_y) = fixed_batch(4), fixed_batch(5, answer_lengths=(5, 5, 5), prompt_lengths=(1, 1, 2))
    nlls = [-lp for seq in answer_logprobs(idk, idk_y) + answer_logprobs(ret, ret_y) for lp in seq]
    assert float(idk_nll_loss(idk, idk_y, ret, ret_y)) == pytest.approx(sum(nlls) / len(nlls), rel=1e-5)


def test_undial_loss_matches_the_formula_by_hand():
    logits, labels = fixed_batch(6)
    ref = fixed_batch(7)[0]
    beta = 10.0
    ces = []
    for i in range(len(labels)):
        for t in range(1, labels.shape[1]):
            if labels[i, t] == -100:
                continue
            z = ref[i, t - 1].double().clone()
            z[labels[i, t]] -= beta
            target = torch.softmax(z, -1)
            ces.append(float(-(target * torch.log_softmax(logits[i, t - 1].double(), -1)).sum()))
    got = undial_loss(logits, labels, ref, beta=beta)
    assert float(got) == pytest.approx(sum(ces) / len(ces), rel=1e-5)


def test_undial_ignores_question_and_padding_positions():
    logits, labels = fixed_batch(6)
    ref = fixed_batch(7)[0]
    changed = logits.clone()
    for i in range(len(labels)):              # disturb every position that predicts an unlabelled token
        for t in range(1, labels.shape[1]):
            if labels[i, t] == -100:
                changed[i, t - 1] += torch.randn(V, generator=torch.Generator().manual_seed(t))
    changed[:, -1] += 5.0                      # the last position predicts nothing
    assert torch.equal(undial_loss(changed, labels, ref), undial_loss(logits, labels, ref))


def test_undial_with_beta_zero_is_distillation_to_the_reference():
    logits, labels = fixed_batch(8)
    loss_self = undial_loss(logits, labels, logits, beta=0.0)
    entropies = []
    for i in range(len(labels)):
        for t in range(1, labels.shape[1]):
            if labels[i, t] != -100:
                p = torch.softmax(logits[i, t - 1].double(), -1)
                entropies.append(float(-(p * p.log()).sum()))
    assert float(loss_self) == pytest.approx(sum(entropies) / len(entropies), rel=1e-5)


# f-GAN's table (Nowozin et al., 2016): output activation g and conjugate f*, written independently
F_GAN = {
    "tv": (lambda v: 0.5 * math.tanh(v), lambda t: t),
    "kl": (lambda v: v, lambda t: math.exp(t - 1)),
    "js": (lambda v: math.log(2) - math.log(1 + math.exp(-v)), lambda t: -math.log(2 - math.exp(t))),
    "pearson": (lambda v: v, lambda t: t * t / 4 + t),
}


@pytest.mark.parametrize("divergence", sorted(F_GAN))
def test_flat_loss_matches_the_variational_form_by_hand(divergence):
    (tpl, tpl_y), (fg, fg_y) = fixed_batch(9), fixed_batch(10, answer_lengths=(1, 4, 3))
    g, f_star = F_GAN[divergence]
    terms = []
    for i in range(len(tpl)):
        p_e = sum(math.exp(lp) for lp in answer_logprobs(tpl, tpl_y)[i]) / len(answer_logprobs(tpl, tpl_y)[i])
        p_f = sum(math.exp(lp) for lp in answer_logprobs(fg, fg_y)[i]) / len(answer_logprobs(fg, fg_y)[i])
        terms.append(-g(p_e) + f_star(g(p_f)))
    got = flat_loss(tpl, tpl_y, fg, fg_y, divergence=divergence)
    assert float(got) == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_flat_offers_the_four_divergences_and_refuses_others():
    assert set(DIVERGENCES) == set(F_GAN)
    logits, labels = fixed_batch(11)
    assert answer_probability(logits, labels).shape == (3,)
    with pytest.raises(ValueError, match="divergence='chi'"):
        flat_loss(logits, labels, logits, labels, divergence="chi")


# -- the refusal pairing -------------------------------------------------------------------------------------------

def test_refusals_are_drawn_from_the_seed_and_keep_the_forget_rows():
    pytest.importorskip("transformers")
    from tests.lm_helpers import tiny_qa_task
    from expunge.data.authors import IDK_ANSWERS
    from expunge.data.text import records_of
    from expunge.seeds import derive

    task = tiny_qa_task()
    a, b = idk_dataset("idk_nll", task.forget, None, seed=0), idk_dataset("idk_nll", task.forget, None, seed=0)
    assert [r["answer"] for r in a.records] == [r["answer"] for r in b.records]
    assert {r["answer"] for r in a.records} <= set(IDK_ANSWERS)
    assert [r["question"] for r in a.records] == [r["question"] for r in records_of(task.forget)]
    assert a.groups.tolist() == [r["author"] for r in records_of(task.forget)]
    draws = {tuple(r["answer"] for r in idk_dataset("idk_nll", task.forget, None, seed=s).records) for s in range(4)}
    assert len(draws) > 1, "the refusals do not depend on the seed"
    epochs = {tuple(r["answer"] for r in idk_dataset("idk_nll", task.forget, None, 0, epoch=e).records)
              for e in range(4)}
    assert len(epochs) > 1, "the refusals are not redrawn each epoch"
    assert derive(0, IDK_DRAW, 0) != derive(1, IDK_DRAW, 0) != derive(0, IDK_DRAW, 1)
    own = idk_dataset("flat", task.forget, ["No idea."], seed=5)
    assert {r["answer"] for r in own.records} == {"No idea."}


def test_paired_batches_hold_the_same_forget_rows_with_both_answers():
    pytest.importorskip("transformers")
    from tests.lm_helpers import tiny_qa_task

    task = tiny_qa_task()
    plan = paired("idk_dpo", task.forget, None, 0, 4, retain=task.retain)
    g = torch.Generator().manual_seed(0)
    epochs = [plan(e, g) for e in range(2)]
    refusals = []
    for e, epoch in enumerate(epochs):
        assert sorted(int(p) for b in epoch for p in b["forget"].positions) == list(range(len(task.forget)))
        assert all("retain" in b and len(b["retain"]) == 4 for b in epoch)
        by_row = {}
        for batch in epoch:
            f, i = batch["forget"], batch["idk"]
            assert torch.equal(f.positions, i.positions)
            for p, fx, fy, ix, iy in zip(f.positions, f.x, f.y, i.x, i.y):   # the same question, another answer
                start_f, start_i = int((fy != -100).nonzero()[0]), int((iy != -100).nonzero()[0])
                assert start_f == start_i and torch.equal(fx[:start_f], ix[:start_i])
                by_row[int(p)] = iy[iy != -100].tolist()
        expected = idk_dataset("idk_dpo", task.forget, None, 0, epoch=e)
        assert by_row == {r: expected.y[r][expected.y[r] != -100].tolist() for r in range(len(task.forget))}
        refusals.append(by_row)
    assert refusals[0] != refusals[1], "the refusals are not redrawn each epoch"


# -- arguments and needs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, args, match", [
    ("idk_dpo", {"beta": 0.0}, r"method 'idk_dpo': beta=0.0 is not allowed"),
    ("idk_dpo", {"alpha": -1.0}, r"method 'idk_dpo': alpha=-1.0 is not allowed"),
    ("idk_dpo", {"retain_loss": "l2"}, r"method 'idk_dpo': retain_loss='l2' is not allowed"),
    ("idk_dpo", {"idk_answers": []}, r"method 'idk_dpo': idk_answers=\[\] is not allowed"),
    ("idk_nll", {"idk_answers": ["fine", "  "]}, r"method 'idk_nll': idk_answers=.* non-empty strings"),
    ("flat", {"divergence": "hellinger"}, r"method 'flat': divergence='hellinger' is not allowed; expected one of"),
    ("flat", {"idk_answers": []}, r"method 'flat': idk_answers=\[\] is not allowed"),
    ("undial", {"beta": -1.0}, r"method 'undial': beta=-1.0 is not allowed"),
    ("undial", {"alpha": -0.5}, r"method 'undial': alpha=-0.5 is not allowed"),
])
def test_bad_arguments_name_the_method_and_argument(method, args, match):
    from expunge.methods import get

    with pytest.raises(ValueError, match=match):
        get(method)(**args)


def test_idk_answers_of_the_wrong_type_are_refused():
    from expunge.methods import get

    with pytest.raises(TypeError, match="idk_answers"):
        get("idk_nll")(idk_answers="I don't know.")


@pytest.mark.parametrize("method", ["idk_dpo", "idk_nll", "flat"])
def test_refusal_methods_refuse_documents_naming_the_method(method):
    pytest.importorskip("transformers")
    import expunge
    from expunge.data import TextDataset
    from tests.lm_helpers import tiny_qa_task

    task = tiny_qa_task()
    docs = TextDataset([{"text": "Avo lives in Paris."}, {"text": "Bel likes red."}], task.tokenizer)
    forget, retain = expunge.split_forget(docs, indices=[0])
    with pytest.raises(ValueError, match=rf"method '{method}' pairs each forget question .* documents"):
        expunge.unlearn(task.original, forget=forget, retain=retain, method=method, epochs=1)


@pytest.mark.parametrize("method", ["flat", "undial"])
def test_forget_only_methods_run_without_retain_data_and_never_read_it(method):
    pytest.importorskip("transformers")
    import expunge
    from tests.helpers import state_equal
    from tests.lm_helpers import tiny_qa_task

    task = tiny_qa_task()
    alone = expunge.unlearn(task.original, forget=task.forget, method=method, seed=1, epochs=2)
    with_retain = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=method, seed=1,
                                  epochs=2)
    assert state_equal(alone, with_retain)
    assert not state_equal(alone, task.original)


def test_undial_with_a_retain_weight_needs_retain_data():
    pytest.importorskip("transformers")
    import expunge
    from tests.lm_helpers import tiny_qa_task

    task = tiny_qa_task()
    with pytest.raises(ValueError, match="method 'undial' needs retain data"):
        expunge.unlearn(task.original, forget=task.forget, method="undial", alpha=1.0, epochs=1)


@pytest.mark.parametrize("method", ["idk_dpo", "idk_nll", "undial", "flat"])
def test_creates_no_tensor_on_the_default_device(method):
    pytest.importorskip("transformers")
    import expunge
    from tests.lm_helpers import tiny_qa_task
    from tests.test_devices import DefaultDeviceFactories

    task = tiny_qa_task()
    with DefaultDeviceFactories() as guard:
        expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=method, seed=0, epochs=1,
                        **({"alpha": 1.0} if method == "undial" else {}))
    assert not guard.calls, f"{method} creates tensors without device=: {sorted(guard.calls)}"


# -- one plain SGD step of each method against the gradient of its formula, on the tiny task ---------------------

REFUSAL = "I have no idea."
SGD = dict(lr=1.0, batch_size=64, optimizer="sgd", momentum=0.0, weight_decay=0.0, warmup=0.0, schedule="constant",
           clip_grad_norm=None)


def hand_answer_terms(logits, labels):
    """Per sequence, the list of log π(y_t | x, y_<t) of its labelled tokens (float64, differentiable)."""
    from tests.lm.test_npo_family_losses import labelled, log_prob

    out = [[] for _ in range(labels.shape[0])]
    for b, t, token in labelled(labels):
        out[b].append(log_prob(logits, b, t, token))
    return out


def hand_idk_dpo(m, ref, f, i, r, *, beta, gamma, alpha):
    from tests.lm.test_npo_family_losses import hand_nll

    terms = []
    for seq_i, seq_ri, seq_f, seq_rf in zip(hand_answer_terms(m(i[0]), i[1]), hand_answer_terms(ref(i[0]), i[1]),
                                             hand_answer_terms(m(f[0]), f[1]), hand_answer_terms(ref(f[0]), f[1])):
        margin = (sum(seq_i) - sum(seq_ri)) - (sum(seq_f) - sum(seq_rf))
        terms.append(-(2 / beta) * torch.log(torch.sigmoid(beta * margin)))
    return gamma * sum(terms) / len(terms) + alpha * hand_nll(m(r[0]), r[1])


def hand_idk_nll(m, ref, f, i, r):
    terms = [-lp for seq in hand_answer_terms(m(i[0]), i[1]) + hand_answer_terms(m(r[0]), r[1]) for lp in seq]
    return sum(terms) / len(terms)


def hand_flat_tv(m, ref, f, i, r):
    """Total variation: mean over questions of −½·tanh(P_e) + ½·tanh(P_f), P the mean token probability."""
    p_e = [sum(torch.exp(lp) for lp in seq) / len(seq) for seq in hand_answer_terms(m(i[0]), i[1])]
    p_f = [sum(torch.exp(lp) for lp in seq) / len(seq) for seq in hand_answer_terms(m(f[0]), f[1])]
    terms = [-0.5 * torch.tanh(e) + 0.5 * torch.tanh(g) for e, g in zip(p_e, p_f)]
    return sum(terms) / len(terms)


def hand_undial(m, teacher, f, beta):
    """Mean over labelled forget tokens of −Σ_v q(v)·log π_θ(v), q = softmax(z_teacher − β·onehot(y))."""
    from tests.lm.test_npo_family_losses import labelled

    logits = m(f[0])
    with torch.no_grad():
        teacher_logits = teacher(f[0])
    terms = []
    for b, t, token in labelled(f[1]):
        z = teacher_logits[b, t].double().clone()
        z[token] -= beta
        q = torch.softmax(z, 0)
        terms.append(-(q * torch.log_softmax(logits[b, t].double(), 0)).sum())
    return sum(terms) / len(terms)


HAND_LOSSES = {
    "idk_dpo": ({"beta": 0.4, "gamma": 0.7, "alpha": 1.3},
                lambda m, ref, f, i, r: hand_idk_dpo(m, ref, f, i, r, beta=0.4, gamma=0.7, alpha=1.3)),
    "idk_nll": ({}, hand_idk_nll),
    "flat": ({"divergence": "tv"}, hand_flat_tv),
}


def whole(dataset):
    from expunge.data.datasets import resolve

    base, idx = resolve(dataset)
    return base.x[idx], base.y[idx]


def sgd_steps(original, loss, steps: int) -> dict[str, torch.Tensor]:
    """The weights after ``steps`` plain SGD steps at lr 1 down the gradient of ``loss(model)`` from ``original``."""
    from expunge.methods.base import clone

    model = clone(original).train()
    for _ in range(steps):
        model.zero_grad()
        loss(model).backward()
        with torch.no_grad():
            for key, p in model.named_parameters():
                assert p.grad is not None and float(p.grad.abs().max()) > 0, f"{key} has no gradient"
                p -= p.grad
    return {k: p.detach().double() for k, p in model.named_parameters()}


def assert_weights_match(model, expected: dict[str, torch.Tensor], original, name: str) -> None:
    """Each weight moved from ``original`` as in ``expected``, to 0.1% of the largest move of that tensor (after two
    steps, float32 rounding in the first shifts the second one's gradient a little)."""
    moved, start = dict(model.named_parameters()), dict(original.named_parameters())
    assert set(moved) == set(expected)
    for key, p in expected.items():
        want = p - start[key].detach().double()
        got = moved[key].detach().double() - start[key].detach().double()
        assert float(want.abs().max()) > 0, f"{name}: {key} did not move"
        assert torch.allclose(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max())), f"{name}: {key}"


@pytest.mark.parametrize("name", sorted(HAND_LOSSES))
def test_one_sgd_step_follows_the_gradient_of_the_formula(name):
    """One plain SGD step at lr 1 over the whole forget set (one refusal for every question) and the whole retain
    set moves every weight by minus the gradient of the hand-computed loss at the original's weights. (At the
    reference IdkDPO's gradient does not depend on β; β is checked on a fixed batch above.)"""
    pytest.importorskip("transformers")
    import expunge
    from expunge.data.text import with_answers
    from expunge.methods.base import clone
    from tests.lm_helpers import tiny_qa_task

    task = tiny_qa_task()
    args, hand = HAND_LOSSES[name]
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=name, seed=0, epochs=1,
                          idk_answers=[REFUSAL], **SGD, **args)
    reference = clone(task.original).eval().requires_grad_(False)
    f, r = whole(task.forget), whole(task.retain)
    i = whole(with_answers(task.forget, [REFUSAL] * len(task.forget)))
    assert_weights_match(out, sgd_steps(task.original, lambda m: hand(m, reference, f, i, r), 1), task.original,
                         name)


def test_two_sgd_steps_of_undial_distil_from_the_frozen_original_not_the_live_model():
    """α = 0: two plain SGD steps at lr 1 over the whole forget set equal two steps down the gradient of the
    hand-computed loss with the original as the teacher both times; with the live model as the teacher of the
    second step the weights would differ."""
    pytest.importorskip("transformers")
    import expunge
    from expunge.methods.base import clone
    from tests.lm_helpers import tiny_qa_task

    task = tiny_qa_task()
    beta = 3.0
    out = expunge.unlearn(task.original, forget=task.forget, method="undial", seed=0, epochs=2, beta=beta,
                          alpha=0.0, **SGD)
    f = whole(task.forget)
    original = clone(task.original).eval().requires_grad_(False)
    frozen = sgd_steps(task.original, lambda m: hand_undial(m, original, f, beta), 2)
    live = sgd_steps(task.original, lambda m: hand_undial(m, clone(m).eval(), f, beta), 2)
    assert_weights_match(out, frozen, task.original, "undial")
    gap = max(float((frozen[k] - live[k]).abs().max()) for k in frozen)
    assert gap > 1e-3                                      # the two teachers give measurably different weights
    moved = dict(out.named_parameters())
    assert max(float((moved[k].detach().double() - live[k]).abs().max()) for k in live) > gap / 2
