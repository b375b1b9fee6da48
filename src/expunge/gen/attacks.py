"""Attacks on image generators: membership inference on training images, and an embedding-space search that tries
to bring an erased class back.

**Membership** (:func:`membership_attack`). Members are the forget images (the original trained on them),
non-members held-out images of the same classes (the test set), so the attack asks whether the model still
treats the forgotten images as training data. Scores, oriented "higher = member" for
:class:`expunge.metrics.roc.AttackResult` (AUC, TPR at 1% FPR):

- diffusion models: minus the per-example denoising error ‖ε − ε_θ(x_t, t, y)‖² (mean over pixels) averaged over
  timesteps t = 10%, 30% and 50% of T (:data:`MEMBERSHIP_TIMESTEPS`), conditioned on the image's own label — the
  loss attack of Matsumoto et al. ("Membership Inference Attacks against Diffusion Models", 2023) and of Carlini et
  al. ("Extracting Training Data from Diffusion Models", 2023) at several fixed timesteps. The noise ε is drawn
  once from a seeded CPU generator (one draw per image and timestep, from ``seed`` and the images' order), so every
  model is scored on the same draws;
- GANs: the discriminator's logit on the real image and its label (the white-box discriminator attack of Hayes et
  al., "LOGAN", 2019).

**Robustness** (:func:`embedding_attack`; the adversarial-prompt idea of AdvUnlearn and UnlearnCanvas, in the
conditioning space). Starting from the erased class's conditioning embedding e = ``model.embed(c)`` (a class
embedding vector or a text encoder's hidden states), Adam searches one perturbation δ shared by all samples,
projected onto the L2 ball ‖δ‖ ≤ ρ‖e‖ after every step, that maximises a judge's mean log-probability of class c
on ``model.sample(..., embeddings=e + δ, grad=True)`` (DDIM with few steps, differentiated end to end). Each
iteration draws fresh starting noise (its own seed); the result, ``attack_success``, is the % of ``n_samples``
new samples (a seed of their own) from e + δ that the judge assigns to c. Defaults (:data:`ATTACK_DEFAULTS`):
ρ = 0.5, 10 iterations of 16 samples with 8 DDIM steps (for a ``sample`` that takes ``steps=``), 32 final
samples, Adam's learning rate such that the iterations can move δ by up to 2.5ρ‖e‖ in all (the PGD step rule of
Madry et al.); on the embedded 0.7M-parameter UNet at 8×8 this took ~6 s of one busy CPU core per forgotten class.
A model without ``embed`` and a ``sample`` that takes ``embeddings=`` and ``grad=`` is not attacked
(:func:`supports_embedding_attack`).

The search and the score use **two judges** trained on the same images from different seeds
(``search_judge=``): a judge is itself a network that must put every image in some class, and a search against
the judge that scores it also finds images that merely fool that judge. Measured on a small diffusion model of
digits 0-3 (164k parameters; its oracle retrained without class 1; 64 final samples): the original scored 100% at
ρ = 0.5, 1 and 2 either way; the oracle, which never saw a 1, scored 44%, 91% and 100% when the searched judge also
scored, and 6%, 36% and 64% when an independent judge scored. The oracle's value, scored the same way, remains the
baseline, and the radius bounds the search.
"""
from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ..devices import model_device
from ..metrics.roc import AttackResult
from ..seeds import derive

MEMBERSHIP_TIMESTEPS = (0.1, 0.3, 0.5)     # fractions of T
ATTACK_DEFAULTS: dict[str, Any] = {"radius": 0.5, "iterations": 10, "batch": 16, "steps": 8, "n_samples": 32}


def membership_kind(model: nn.Module) -> str | None:
    """``"diffusion"`` (denoising error), ``"gan"`` (discriminator logit) or None (no membership attack; also for a
    diffusion model distilled into a one-step generator, ``sfd``, whose network is trained at one noise level only,
    so its denoising error elsewhere says nothing about membership)."""
    if getattr(model, "one_step", None) is not None:
        return None
    if callable(getattr(model, "denoising_loss", None)) and hasattr(model, "T"):
        return "diffusion"
    if callable(getattr(model, "discriminator", None)):
        return "gan"
    return None


@torch.no_grad()
def membership_scores(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, seed: int = 0,
                      timesteps: tuple[float, ...] = MEMBERSHIP_TIMESTEPS, batch_size: int = 256) -> np.ndarray:
    """Per image, "higher = member": −(denoising error averaged over ``timesteps``) for a diffusion model, the
    discriminator's logit for a GAN (module docstring). ValueError for a model that offers neither."""
    kind = membership_kind(model)
    if kind is None:
        raise ValueError(f"{type(model).__name__} offers no membership score: it needs denoising_loss (diffusion) "
                         "or discriminator (GAN)")
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        if kind == "gan":
            out = [model.discriminator(x.to(device), y.to(device)).reshape(-1).float().cpu()
                   for x, y in zip(images.split(batch_size), labels.split(batch_size))]
            return torch.cat(out).double().numpy()
        steps = [min(int(model.T) - 1, max(0, int(round(f * int(model.T))))) for f in timesteps]
        g = torch.Generator().manual_seed(derive(seed, "gen-membership-noise"))
        noise = torch.randn((len(steps),) + tuple(images.shape), generator=g, device="cpu")
        error = torch.zeros(len(images), dtype=torch.float64, device="cpu")
        for i, t in enumerate(steps):
            parts = []
            for start in range(0, len(images), batch_size):
                x = images[start:start + batch_size].to(device)
                tt = torch.full((len(x),), t, dtype=torch.long, device=device)
                parts.append(model.denoising_loss(x, labels[start:start + batch_size].to(device), t=tt,
                                                  noise=noise[i, start:start + batch_size].to(device),
                                                  reduction="none").reshape(-1).double().cpu())
            error += torch.cat(parts)
        return (-error / len(steps)).numpy()
    finally:
        model.train(was_training)


def membership_attack(model: nn.Module, members: tuple[torch.Tensor, torch.Tensor],
                      nonmembers: tuple[torch.Tensor, torch.Tensor], *, seed: int = 0) -> AttackResult:
    """The membership attack on (images, labels) ``members`` vs ``nonmembers``; the noise draws depend only on
    ``seed`` and the images' order, so two models see the same draws."""
    x = torch.cat([members[0], nonmembers[0]])
    y = torch.cat([members[1], nonmembers[1]])
    scores = membership_scores(model, x, y, seed=seed)
    is_member = np.r_[np.ones(len(members[0]), bool), np.zeros(len(nonmembers[0]), bool)]
    name = "denoising_error" if membership_kind(model) == "diffusion" else "discriminator"
    return AttackResult.from_scores(name, scores, is_member)


def supports_embedding_attack(model: nn.Module) -> bool:
    """Whether ``model`` has ``embed(labels)`` and a ``sample`` taking ``embeddings=`` and ``grad=``."""
    if not callable(getattr(model, "embed", None)) or not callable(getattr(model, "sample", None)):
        return False
    params = inspect.signature(model.sample).parameters
    return "embeddings" in params and "grad" in params


def attack_settings(**given: Any) -> dict[str, Any]:
    """:data:`ATTACK_DEFAULTS` updated with the ``given`` settings that are not None; ValueError naming an unknown
    setting or a bad value."""
    unknown = sorted(set(given) - set(ATTACK_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown attack setting(s) {unknown}; allowed: {', '.join(ATTACK_DEFAULTS)}")
    o = {**ATTACK_DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    r = o["radius"]
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r < math.inf:
        raise ValueError(f"attack radius must be a finite number >= 0; got {r!r}")
    for name in ("iterations", "batch", "steps", "n_samples"):
        v, low = o[name], 0 if name == "iterations" else 1
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"attack {name} must be an integer >= {low}; got {v!r}")
    return o


def embedding_attack(model: nn.Module, judge: Any, target: int, *, search_judge: Any = None, seed: int = 0,
                     radius: float | None = None, iterations: int | None = None, batch: int | None = None,
                     steps: int | None = None, n_samples: int | None = None) -> float:
    """% of samples from the found embedding that ``judge`` assigns to class ``target``; the search maximises
    ``search_judge``'s log-probability (default: ``judge``'s; give an independently trained one, see the module
    docstring). ValueError for a model that cannot be attacked this way or bad settings."""
    o = attack_settings(radius=radius, iterations=iterations, batch=batch, steps=steps, n_samples=n_samples)
    if not supports_embedding_attack(model):
        raise ValueError(f"{type(model).__name__} cannot be attacked in its conditioning space: it needs embed(labels) "
                         "and sample(..., embeddings=, grad=)")
    was_training = model.training
    model.eval()
    try:
        labels = torch.full((o["batch"],), int(target), dtype=torch.long, device="cpu")
        with torch.no_grad():
            base = model.embed(labels.to(model_device(model)))[:1].detach()
        ball = float(o["radius"]) * float(base.norm())
        delta = torch.zeros_like(base, requires_grad=True)
        extra = {"steps": o["steps"]} if "steps" in inspect.signature(model.sample).parameters else {}
        if o["iterations"] and ball > 0:
            lr = 2.5 * ball / (o["iterations"] * math.sqrt(base.numel()))
            opt = torch.optim.Adam([delta], lr=lr)
            for i in range(o["iterations"]):
                emb = (base + delta).expand(o["batch"], *base.shape[1:])
                images = model.sample(labels, seed=derive(seed, "gen-attack", int(target), i), grad=True,
                                      embeddings=emb, **extra)
                loss = -(search_judge or judge).log_probs(images.float().cpu())[:, int(target)].mean()
                opt.zero_grad(set_to_none=True)
                (grad,) = torch.autograd.grad(loss, [delta])
                delta.grad = grad
                opt.step()
                with torch.no_grad():
                    norm = float(delta.norm())
                    if norm > ball:
                        delta.mul_(ball / norm)
        final = torch.full((o["n_samples"],), int(target), dtype=torch.long, device="cpu")
        with torch.no_grad():
            emb = (base + delta.detach()).expand(o["n_samples"], *base.shape[1:])
            images = model.sample(final, seed=derive(seed, "gen-attack-eval", int(target)), embeddings=emb,
                                  **extra)
        return float(100.0 * (judge.predict(images.cpu()) == int(target)).double().mean())
    finally:
        model.train(was_training)
