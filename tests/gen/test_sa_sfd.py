"""Selective Amnesia and Score Forgetting Distillation: their loss pieces against the formulas on fixed inputs, the
noise levels taken from the reference, forgetting on the tiny digits diffusion model (judged by the CNN judge of
``expunge.gen.judge``), the one-step generator saved and loaded, and bad settings refused in one line. Returning a
new model, leaving the caller's untouched, determinism and refusing a GAN are checked for both by the conformance
table (``tests/conformance/test_generative_methods.py``)."""
from __future__ import annotations

import pytest

pytest.importorskip("diffusers")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import expunge  # noqa: E402
from expunge.data import ArrayDataset  # noqa: E402
from expunge.methods import registered  # noqa: E402
from expunge.methods.selective_amnesia import (antithetic_timesteps, ewc_penalty, fisher_diagonal,  # noqa: E402
                                               image_size)
from expunge.methods.sfd import reference_timesteps, sid_generator_loss  # noqa: E402
from expunge.training import StepContext, batches  # noqa: E402

from tests.gen_helpers import FORGET_CLASS, N_CLASSES, tiny_generation_task, tiny_unet  # noqa: E402

KEPT = [c for c in range(N_CLASSES) if c != FORGET_CLASS]
# settings that make each method forget class 1 of the tiny model within a few seconds
SA_QUICK = {"replay_per_class": 32, "fisher_per_class": 4, "fisher_timesteps": 40, "batch_size": 32}
SFD_QUICK = {"epochs": 3, "lr": 3e-4, "batch_size": 16}


def cnn_accuracy(model, n: int = 50) -> np.ndarray:
    """Per class, the share of ``n`` samples the CNN judge of the real images assigns to their class."""
    from expunge.gen.judge import judge

    task = tiny_generation_task()
    labels = torch.arange(N_CLASSES).repeat_interleave(n)
    pred = judge(task.data).predict(model.sample(labels, seed=1)).numpy()
    return np.array([float((pred[labels.numpy() == k] == k).mean()) for k in range(N_CLASSES)])


def perturbed(model: nn.Module, seed: int = 0) -> nn.Module:
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    return model


# --- Selective Amnesia: the pieces ------------------------------------------------------------------------------

def test_ewc_penalty_is_the_fisher_weighted_squared_distance():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    g = torch.Generator().manual_seed(0)
    anchor = {n: torch.randn(p.shape, generator=g) for n, p in model.named_parameters()}
    fisher = {n: torch.rand(p.shape, generator=g) for n, p in model.named_parameters()}
    expected = 0.0
    for n, p in model.named_parameters():
        for f, w, w0 in zip(fisher[n].flatten().tolist(), p.detach().flatten().tolist(), anchor[n].flatten().tolist()):
            expected += f * (w - w0) ** 2
    with torch.no_grad():
        assert float(ewc_penalty(model, fisher, anchor)) == pytest.approx(expected, rel=1e-6)
        assert float(ewc_penalty(model, fisher, {n: p.detach() for n, p in model.named_parameters()})) == 0.0


def test_antithetic_timesteps_pair_t_with_T_minus_1_minus_t():
    torch.manual_seed(0)
    t = antithetic_timesteps(9, 200, torch.device("cpu"))
    assert len(t) == 9 and int(t.min()) >= 0 and int(t.max()) <= 199
    assert torch.equal(t[:4] + t[5:9], torch.full((4,), 199))


def test_fisher_is_the_mean_squared_gradient_of_the_elbo_sum():
    """F = mean over images of (∇ Σ_t ‖ε_t − ε_θ(x_t, t, c)‖²)², the error summed over pixels, the timestep sum
    estimated from k evenly spaced timesteps × T / k, each (image, timestep) with the noise of the seeded stream."""
    model = tiny_unet(seed=0)
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    c = torch.tensor([0, 3])
    F = fisher_diagonal(model, x, c, timesteps=3, seed=5)
    steps = torch.linspace(0, model.T - 1, 3).round().long()
    gen = torch.Generator().manual_seed(5)
    params = dict(model.named_parameters())
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(2):
        noise = torch.randn((3, 1, 8, 8), generator=gen)
        total = 0.0
        for j, t in enumerate(steps.tolist()):
            a = model.alphas_cumprod[t]
            x_t = a.sqrt() * x[i:i + 1] + (1 - a).sqrt() * noise[j:j + 1]
            total = total + (model.eps(x_t, torch.tensor([t]), c[i:i + 1]) - noise[j:j + 1]).pow(2).sum()
        grads = torch.autograd.grad(total * model.T / 3, list(params.values()))
        for n, g in zip(params, grads):
            expected[n] += g.square() / 2
    assert set(F) == set(expected)
    scale = max(float(e.abs().max()) for e in expected.values())   # batched and one-by-one passes round differently
    for n in F:
        torch.testing.assert_close(F[n], expected[n], rtol=1e-3, atol=1e-6 * scale)
    assert sum(float(f.sum()) for f in F.values()) > 0


def test_sa_loss_on_a_fixed_batch_matches_the_formula():
    """surrogate term + γ · replay term (errors summed over pixels, batch means, shared antithetic timesteps, uniform
    noise images for the forgotten class) + λ · Σ F (θ − θ*)²."""
    model = tiny_unet(seed=0)
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    perturbed(model)
    g = torch.Generator().manual_seed(1)
    fisher = {n: torch.rand(p.shape, generator=g) for n, p in model.named_parameters()}
    method = registered()["selective_amnesia"](ewc_lambda=0.5, replay_weight=2.0)
    replay = ArrayDataset(torch.rand(6, 1, 8, 8) * 2 - 1, torch.tensor([0, 2, 3, 0, 2, 3]), task="generation")
    batch = batches(replay, 6, name="replay", shuffle=False)(0, torch.Generator())[0]
    ctx = StepContext("t", 0, 1, 0, 1, 0.0)
    torch.manual_seed(3)
    got = method.loss([FORGET_CLASS], None, fisher, anchor)(model, batch, ctx)

    torch.manual_seed(3)
    x_f = torch.rand(6, 1, 8, 8) * 2 - 1
    e_r, e_f = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
    t = antithetic_timesteps(6, model.T, torch.device("cpu"))

    def summed_error(x0, labels, noise):
        a = model.alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        return (model.eps(x_t, t, labels) - noise).pow(2).sum(dim=(1, 2, 3)).mean()

    ewc = sum((fisher[n] * (p - anchor[n]) ** 2).sum() for n, p in model.named_parameters())
    expected = (summed_error(x_f, torch.full((6,), FORGET_CLASS), e_f) + 2.0 * summed_error(replay.x, replay.y, e_r)
                + 0.5 * ewc)
    assert float(ewc.detach()) > 0
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert image_size(model) == 64


# --- Selective Amnesia: behaviour -------------------------------------------------------------------------------

def test_selective_amnesia_forgets_the_class_and_keeps_the_others():
    task = tiny_generation_task()
    before = cnn_accuracy(task.original)
    out = expunge.unlearn(task.original, forget=task.forget, method="selective_amnesia", seed=0, **SA_QUICK)
    after = cnn_accuracy(out)
    assert before[FORGET_CLASS] >= 0.9
    assert after[FORGET_CLASS] <= 0.4, f"class {FORGET_CLASS} still generated: {after}"
    assert after[KEPT].min() >= 0.9, f"retained classes lost: {after}"


def test_a_class_surrogate_turns_the_forgotten_class_into_it():
    task = tiny_generation_task()
    out = expunge.unlearn(task.original, forget=task.forget, method="selective_amnesia", seed=0,
                          surrogate="class", surrogate_class=3, **SA_QUICK)
    from expunge.gen.judge import judge

    pred = judge(task.data).predict(out.sample(torch.full((50,), FORGET_CLASS), seed=2))
    assert float((pred == 3).double().mean()) >= 0.8


@pytest.mark.parametrize("args,retain,match", [
    ({"surrogate": "class", "surrogate_class": FORGET_CLASS}, True, "surrogate_class=1 is not allowed; expected a "
                                                                     "retained class"),
    ({"replay": "real"}, False, "replay='real' replays the retain images; pass retain="),
])
def test_selective_amnesia_refuses_bad_settings_in_one_line(args, retain, match):
    task = tiny_generation_task()
    with pytest.raises(ValueError, match=match) as err:
        expunge.unlearn(task.original, forget=task.forget, retain=task.retain if retain else None,
                        method="selective_amnesia", **args)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name,args,allowed", [
    ("selective_amnesia", {"surrogate": "noise"}, "uniform, class"),
    ("selective_amnesia", {"replay": "both"}, "generated, real"),
    ("selective_amnesia", {"ewc_lambda": -1.0}, ">= 0"),
    ("selective_amnesia", {"fisher_per_class": 0}, ">= 1"),
    ("sfd", {"alpha": 0.0}, "> 0"),
    ("sfd", {"forget_weight": 0.0}, "> 0"),
])
def test_bad_argument_values_refused(name, args, allowed):
    with pytest.raises(ValueError, match=allowed):
        registered()[name](**args)


# --- SFD: the pieces --------------------------------------------------------------------------------------------

def test_sid_generator_loss_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    f_phi, f_psi, x_g = (torch.randn(3, 1, 2, 2, generator=g) for _ in range(3))
    expected = 0.0
    for i in range(3):
        omega = max(float((f_phi[i] - x_g[i]).abs().mean()), 1e-5)
        d = f_phi[i] - f_psi[i]
        expected += float((d * ((f_phi[i] - x_g[i]) - 1.2 * d)).sum()) / omega / 3
    assert float(sid_generator_loss(f_phi, f_psi, x_g, 1.2)) == pytest.approx(expected, rel=1e-5)
    # α = 1: the reference's special case, Σ (f_φ − f_ψ)(f_ψ − x_g) / ω
    omega = (f_phi - x_g).abs().mean(dim=(1, 2, 3), keepdim=True)
    special = ((f_phi - f_psi) * (f_psi - x_g) / omega).sum(dim=(1, 2, 3)).mean()
    assert float(sid_generator_loss(f_phi, f_psi, x_g, 1.0)) == pytest.approx(float(special), rel=1e-5)


def test_sid_generator_loss_passes_no_gradient_through_omega():
    f_phi = torch.tensor([[[[1.0, -1.0]]]])
    f_psi = torch.tensor([[[[0.5, 0.0]]]])
    x_g = torch.tensor([[[[0.0, 0.0]]]], requires_grad=True)
    sid_generator_loss(f_phi, f_psi, x_g, 1.2).backward()
    omega = 1.0        # mean |f_φ − x_g|
    torch.testing.assert_close(x_g.grad, -(f_phi - f_psi) / omega)


def test_noise_levels_are_the_reference_timesteps():
    from expunge.gen.diffusion import linear_alphas_cumprod

    class Schedule:
        def __init__(self, T):
            self.alphas_cumprod = linear_alphas_cumprod(T)

    assert reference_timesteps(Schedule(1000)) == {"t_min": 38, "t_init": 440, "t_max": 712}
    at_200 = reference_timesteps(Schedule(200))       # the same schedule on 200 steps: about a fifth of each
    assert at_200 == {"t_min": 7, "t_init": 87, "t_max": 140}


# --- SFD: behaviour ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def distilled():
    task = tiny_generation_task()
    return expunge.unlearn(task.original, forget=task.forget, method="sfd", seed=0, **SFD_QUICK)


def test_sfd_forgets_the_class_and_keeps_the_others(distilled):
    task = tiny_generation_task()
    assert distilled.one_step is not None and task.original.one_step is None
    after = cnn_accuracy(distilled)
    assert after[FORGET_CLASS] <= 0.4, f"class {FORGET_CLASS} still generated: {after}"
    assert after[KEPT].min() >= 0.9, f"retained classes lost: {after}"


def test_the_one_step_generator_samples_in_one_evaluation_and_survives_save_and_load(distilled, tmp_path):
    labels = torch.tensor([0, 2, 3])
    z = torch.randn((3, 1, 8, 8), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        direct = distilled.one_step_images(z, labels, distilled.one_step).clamp(-1, 1)
    torch.testing.assert_close(distilled.sample(labels, seed=4), direct)
    expunge.save_model(distilled, tmp_path / "sfd.safetensors")
    loaded = expunge.load_model(tmp_path / "sfd.safetensors")
    assert loaded.one_step == distilled.one_step
    assert torch.equal(loaded.sample(labels, seed=4), distilled.sample(labels, seed=4))


def test_sfd_refuses_an_override_class_that_is_forgotten():
    task = tiny_generation_task()
    with pytest.raises(ValueError, match="override_class=1 is not allowed; expected a retained class") as err:
        expunge.unlearn(task.original, forget=task.forget, method="sfd", override_class=FORGET_CLASS)
    assert "\n" not in str(err.value)
