"""GradAscent, GradDiff, NPO and SimNPO: each loss on a fixed batch against its formula computed token by token
with plain torch ops; one plain SGD step of each method against the gradient of that formula on the tiny task;
argument checks; LoRA runs that change only the adapters (kept) or fold them into the weights (merged)."""
from __future__ import annotations

import math

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402

import expunge  # noqa: E402
from expunge.data.datasets import resolve  # noqa: E402
from expunge.methods import get  # noqa: E402
from expunge.methods.base import clone  # noqa: E402
from expunge.methods.grad_ascent import grad_ascent_loss  # noqa: E402
from expunge.methods.grad_diff import grad_diff_loss, kl_to_reference  # noqa: E402
from expunge.methods.npo import npo_forget_loss, npo_loss  # noqa: E402
from expunge.methods.simnpo import simnpo_forget_loss, simnpo_loss  # noqa: E402

from tests.lm_helpers import tiny_qa_task  # noqa: E402


# --- the formulas, token by token --------------------------------------------------------------------------------

def labelled(labels):
    """(sequence, position t whose logits predict the label at t + 1, that label) for every labelled token."""
    return [(b, t - 1, int(labels[b, t])) for b in range(labels.shape[0]) for t in range(1, labels.shape[1])
            if int(labels[b, t]) != -100]


def log_prob(logits, b, t, token):
    row = logits[b, t].double()
    return row[token] - torch.logsumexp(row, 0)


def sequence_log_probs(logits, labels):
    """[log π(y|x) summed over each sequence's labelled tokens], [their counts]."""
    sums = [torch.zeros((), dtype=torch.float64) for _ in range(labels.shape[0])]
    counts = [0] * labels.shape[0]
    for b, t, token in labelled(labels):
        sums[b] = sums[b] + log_prob(logits, b, t, token)
        counts[b] += 1
    return sums, counts


def hand_nll(logits, labels):
    """Mean NLL over every labelled token of the batch."""
    terms = [-log_prob(logits, b, t, token) for b, t, token in labelled(labels)]
    return sum(terms) / len(terms)


def hand_kl(logits, reference_logits, labels):
    """Mean over the positions predicting labelled tokens of Σ_v p_ref(v)·(log p_ref(v) − log p_θ(v))."""
    terms = []
    for b, t, _ in labelled(labels):
        p_ref = torch.softmax(reference_logits[b, t].double(), 0)
        terms.append((p_ref * (torch.log(p_ref) - torch.log_softmax(logits[b, t].double(), 0))).sum())
    return sum(terms) / len(terms)


def hand_npo(logits, reference_logits, labels, beta):
    mine, _ = sequence_log_probs(logits, labels)
    ref, _ = sequence_log_probs(reference_logits, labels)
    terms = [-(2 / beta) * torch.log(torch.sigmoid(-beta * (m - r))) for m, r in zip(mine, ref)]
    return sum(terms) / len(terms)


def hand_simnpo(logits, labels, beta, gamma):
    sums, counts = sequence_log_probs(logits, labels)
    terms = [-(2 / beta) * torch.log(torch.sigmoid(-(beta / n) * s - gamma)) for s, n in zip(sums, counts)]
    return sum(terms) / len(terms)


def fixed_batch(seed=0, batch=3, length=8, vocab=13):
    """Logits, reference logits and labels with -100 on the prompt and the padding, sequences of unequal length."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, length, vocab, generator=g) * 2
    reference = logits + torch.randn(batch, length, vocab, generator=g)
    labels = torch.randint(0, vocab, (batch, length), generator=g)
    for b, (prompt, real) in enumerate([(3, 8), (2, 5), (4, 7)][:batch]):
        labels[b, :prompt] = -100
        labels[b, real:] = -100
    return logits, reference, labels


def close(a, b):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64),
                          rtol=1e-5, atol=1e-6)


# --- each loss against its formula ---------------------------------------------------------------------------------

def test_grad_ascent_loss_is_minus_the_token_mean_nll():
    logits, _, labels = fixed_batch()
    assert close(grad_ascent_loss(logits, labels), -hand_nll(logits, labels))


def test_kl_to_reference_matches_the_formula_and_vanishes_at_the_reference():
    logits, reference, labels = fixed_batch()
    assert close(kl_to_reference(logits, reference, labels), hand_kl(logits, reference, labels))
    assert float(kl_to_reference(logits, reference, labels)) > 0.01
    assert abs(float(kl_to_reference(reference, reference, labels))) < 1e-6
    # positions that predict no labelled token (prompt, padding) do not count
    moved = reference.clone()
    moved[1, 5:] += 7.0       # sequence 1's last label sits at position 4, predicted by the logits at 3
    assert close(kl_to_reference(logits, moved, labels), kl_to_reference(logits, reference, labels))


@pytest.mark.parametrize("retain_loss", ["nll", "kl"])
def test_grad_diff_loss(retain_loss):
    f_logits, _, f_labels = fixed_batch(seed=1)
    r_logits, r_ref, r_labels = fixed_batch(seed=2)
    got = grad_diff_loss(f_logits, f_labels, r_logits, r_labels, gamma=0.7, alpha=1.9, retain_loss=retain_loss,
                         retain_reference_logits=r_ref)
    retain = hand_nll(r_logits, r_labels) if retain_loss == "nll" else hand_kl(r_logits, r_ref, r_labels)
    assert close(got, -0.7 * hand_nll(f_logits, f_labels) + 1.9 * retain)


def test_grad_diff_kl_retain_term_needs_the_reference_logits():
    f_logits, _, f_labels = fixed_batch(seed=1)
    with pytest.raises(ValueError, match="reference"):
        grad_diff_loss(f_logits, f_labels, f_logits, f_labels, retain_loss="kl")


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_npo_forget_loss_matches_the_formula(beta):
    from expunge.lm.losses import answer_nll

    logits, reference, labels = fixed_batch(seed=3)
    ref_nll = answer_nll(reference, labels)[0]
    assert close(npo_forget_loss(logits, labels, ref_nll, beta), hand_npo(logits, reference, labels, beta))


def test_npo_starts_as_gradient_ascent_on_the_summed_answer_nll():
    """At π_θ = π_ref the loss is (2/β)·log 2 and its gradient that of −mean over sequences of the summed NLL."""
    from expunge.lm.losses import answer_nll

    logits, _, labels = fixed_batch(seed=4)
    a = logits.clone().requires_grad_(True)
    loss = npo_forget_loss(a, labels, answer_nll(logits, labels)[0], beta=0.1)
    assert close(loss, 20 * math.log(2))
    loss.backward()
    b = logits.clone().requires_grad_(True)
    (-answer_nll(b, labels)[0].mean()).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_npo_loss_combines_forget_and_retain_terms():
    from expunge.lm.losses import answer_nll

    f_logits, f_ref, f_labels = fixed_batch(seed=5)
    r_logits, r_ref, r_labels = fixed_batch(seed=6)
    ref_nll = answer_nll(f_ref, f_labels)[0]
    for kind, retain in (("nll", hand_nll(r_logits, r_labels)), ("kl", hand_kl(r_logits, r_ref, r_labels))):
        got = npo_loss(f_logits, f_labels, ref_nll, r_logits, r_labels, beta=0.3, gamma=1.5, alpha=0.4,
                       retain_loss=kind, retain_reference_logits=r_ref)
        assert close(got, 1.5 * hand_npo(f_logits, f_ref, f_labels, 0.3) + 0.4 * retain)


@pytest.mark.parametrize("beta,gamma", [(4.5, 0.0), (2.5, 1.0), (1.0, 0.3)])
def test_simnpo_forget_loss_matches_the_paper_formula(beta, gamma):
    logits, _, labels = fixed_batch(seed=7)
    assert close(simnpo_forget_loss(logits, labels, beta, gamma), hand_simnpo(logits, labels, beta, gamma))


def test_simnpo_margin_outside_beta_equals_the_references_delta_inside():
    """The references compute −(2/β)·log σ(β·(NLL/|y| − δ)); the paper's margin is γ = β·δ."""
    from expunge.lm.losses import answer_nll

    logits, _, labels = fixed_batch(seed=8)
    beta, delta = 2.5, 0.4
    nll, n = answer_nll(logits, labels)
    references = -(2 / beta) * torch.nn.functional.logsigmoid(beta * (nll / n - delta)).mean()
    assert close(simnpo_forget_loss(logits, labels, beta, gamma=beta * delta), references)
    assert not close(simnpo_forget_loss(logits, labels, beta, gamma=delta), references)


def test_simnpo_loss_weights_its_terms():
    f_logits, _, f_labels = fixed_batch(seed=9)
    r_logits, r_ref, r_labels = fixed_batch(seed=10)
    got = simnpo_loss(f_logits, f_labels, r_logits, r_labels, beta=2.0, gamma=0.5, forget_weight=0.125, alpha=3.0,
                      retain_loss="kl", retain_reference_logits=r_ref)
    assert close(got, 0.125 * hand_simnpo(f_logits, f_labels, 2.0, 0.5) + 3.0 * hand_kl(r_logits, r_ref, r_labels))


# --- the methods train on those formulas ---------------------------------------------------------------------------

def whole(dataset):
    base, idx = resolve(dataset)
    return base.x[idx], base.y[idx]


HAND_LOSSES = {
    "grad_ascent": ({}, lambda m, ref, f, r: -hand_nll(m(f[0]), f[1])),
    "grad_diff": ({"gamma": 0.8, "alpha": 1.5, "retain_loss": "kl"},
                  lambda m, ref, f, r: -0.8 * hand_nll(m(f[0]), f[1]) + 1.5 * hand_kl(m(r[0]), ref(r[0]), r[1])),
    "npo": ({"beta": 0.5, "gamma": 1.2, "alpha": 0.7},
            lambda m, ref, f, r: 1.2 * hand_npo(m(f[0]), ref(f[0]), f[1], 0.5) + 0.7 * hand_nll(m(r[0]), r[1])),
    "simnpo": ({"beta": 2.0, "gamma": 0.5, "forget_weight": 0.6, "alpha": 0.9},
               lambda m, ref, f, r: 0.6 * hand_simnpo(m(f[0]), f[1], 2.0, 0.5) + 0.9 * hand_nll(m(r[0]), r[1])),
}


@pytest.mark.parametrize("name", sorted(HAND_LOSSES))
def test_one_sgd_step_follows_the_gradient_of_the_formula(name):
    """One plain SGD step at lr 1 over the whole forget and retain sets moves the weights by minus the gradient of
    the hand-computed loss at the original's weights."""
    task = tiny_qa_task()
    args, hand = HAND_LOSSES[name]
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=name, seed=0, epochs=1,
                          lr=1.0, batch_size=64, optimizer="sgd", momentum=0.0, weight_decay=0.0, warmup=0.0,
                          schedule="constant", clip_grad_norm=None, **args)
    model = clone(task.original).train()
    reference = clone(task.original).eval().requires_grad_(False)
    hand(model, reference, whole(task.forget), whole(task.retain)).backward()
    moved = dict(out.named_parameters())
    for key, p in model.named_parameters():
        step = (p.detach() - moved[key].detach()).double()
        assert torch.allclose(step, p.grad.double(), rtol=1e-3, atol=2e-5), f"{name}: {key}"


# --- arguments -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,args,argument", [
    ("grad_diff", {"retain_loss": "mse"}, "retain_loss"),
    ("grad_diff", {"gamma": 0.0}, "gamma"),
    ("grad_diff", {"alpha": -1.0}, "alpha"),
    ("npo", {"beta": 0.0}, "beta"),
    ("npo", {"retain_loss": "KL"}, "retain_loss"),
    ("npo", {"gamma": -1.0}, "gamma"),
    ("simnpo", {"beta": -1.0}, "beta"),
    ("simnpo", {"gamma": -0.5}, "gamma"),
    ("simnpo", {"forget_weight": 0.0}, "forget_weight"),
    ("simnpo", {"alpha": -0.1}, "alpha"),
    ("grad_ascent", {"lora": {"r": 0}}, "lora"),
])
def test_bad_values_name_the_method_and_argument(name, args, argument):
    with pytest.raises(ValueError, match=rf"method '{name}': {argument}"):
        get(name)(**args)


def test_grad_diff_reads_the_reference_only_for_the_kl_retain_term():
    assert not get("grad_diff")().needs_reference
    assert get("grad_diff")(retain_loss="kl").needs_reference
    assert get("npo")().needs_reference and get("npo")(retain_loss="nll").needs_reference
    assert not get("simnpo")().needs_reference and get("simnpo")(retain_loss="kl").needs_reference
    assert not get("grad_ascent")().needs_reference


# --- LoRA --------------------------------------------------------------------------------------------------------

def base_name(peft_name: str) -> str:
    return peft_name.removeprefix("base_model.model.").replace(".base_layer.", ".")


@pytest.mark.parametrize("name", ["npo", "grad_diff"])
def test_lora_kept_changes_only_the_adapters(name):
    pytest.importorskip("peft")
    task = tiny_qa_task()
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=name, seed=0, epochs=3,
                          lr=1e-2, lora={"r": 8, "merge": False})
    assert hasattr(out.hf, "peft_config"), "merge=False keeps the adapters"
    original = dict(task.original.hf.named_parameters())
    adapters = {k: p for k, p in out.hf.named_parameters() if "lora_" in k}
    assert adapters, "no adapter weights in the returned model"
    trained = [k for k, p in adapters.items() if "lora_B" in k and float(p.detach().abs().max()) > 0]
    assert trained, "the adapters never trained (every lora_B is still zero)"
    for key, p in out.hf.named_parameters():
        if "lora_" not in key:
            assert torch.equal(p, original[base_name(key)]), f"{name}: base weight {key} changed under LoRA"
    assert not torch.equal(out(whole(task.forget)[0]), task.original(whole(task.forget)[0]))


@pytest.mark.parametrize("name", ["npo", "grad_diff"])
def test_lora_merged_returns_plain_weights_that_differ_only_where_adapters_were(name):
    pytest.importorskip("peft")
    task = tiny_qa_task()
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=name, seed=0, epochs=3,
                          lr=1e-2, lora={"r": 8, "target_modules": ["q_proj", "v_proj"], "merge": True})
    assert not hasattr(out.hf, "peft_config")
    assert not any("lora_" in k for k in out.state_dict())
    original = task.original.state_dict()
    after = out.state_dict()
    assert after.keys() == original.keys()
    changed = {k for k in original if not torch.equal(original[k], after[k])}
    assert changed, "merging trained adapters left the weights as they were"
    assert all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed), sorted(changed)


@pytest.mark.parametrize("name,args", [
    ("grad_diff", {"lr": 1e-2, "epochs": 12}),
    ("npo", {"lr": 1e-2, "epochs": 12, "beta": 0.5, "alpha": 2.0}),
])
def test_lora_run_forgets_and_keeps(name, args):
    """Through rank-8 adapters on q/v (merged), with the conformance suite's thresholds; LoRA needs a learning rate
    about ten times the full-weight one."""
    pytest.importorskip("peft")
    from tests.conformance.test_language_methods import FORGET_PROGRESS, RETAIN_TOLERANCE
    from tests.lm_helpers import answer_nll

    task = tiny_qa_task()
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=name, seed=0,
                          lora={"r": 8}, **args)
    orig, oracle, now = (answer_nll(m, task.forget) for m in (task.original, task.oracle, out))
    assert now >= orig + FORGET_PROGRESS * (oracle - orig), (name, now, orig, oracle)
    assert answer_nll(out, task.retain) <= answer_nll(task.oracle, task.retain) + RETAIN_TOLERANCE


@pytest.mark.parametrize("name,args", [("grad_ascent", {}), ("grad_diff", {"retain_loss": "kl"}), ("npo", {}),
                                       ("simnpo", {"retain_loss": "kl"})])
def test_no_tensor_is_created_on_the_default_device(name, args):
    from tests.test_devices import DefaultDeviceFactories

    task = tiny_qa_task()
    with DefaultDeviceFactories() as guard:
        expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=name, seed=0, epochs=1, **args)
    assert not guard.calls, f"{name} creates tensors without device=: {sorted(guard.calls)}"


def test_grad_ascent_needs_no_retain_set():
    from tests.helpers import state_equal

    task = tiny_qa_task()
    alone = expunge.unlearn(task.original, forget=task.forget, method="grad_ascent", seed=0, epochs=2)
    given = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="grad_ascent", seed=0,
                            epochs=2)
    assert state_equal(alone, given) and not state_equal(alone, task.original)
