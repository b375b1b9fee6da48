"""Adapt-then-Unlearn: make a GAN stop generating a class by moving its parameters away from a copy adapted to it.

Paper: Tiwary, Guha, Panda and Prathosh, "Adapt then Unlearn: Exploring Parameter Space Semantics for Unlearning
in Generative Adversarial Networks", TMLR 2025 (arXiv:2309.14054).
Reference: https://github.com/atriguha/Adapt_Unlearn (read at commit 163a354: ``Negative_Adaptation/EWC_ADAPT_MNIST/
stylegan2_ewc.py`` and ``model.py`` for stage 1, ``Unlearning/Unlearning_MNIST/train_different_losses.py`` for
stage 2).
Needs: a GAN (:class:`expunge.gen.gan.ConditionalGAN`), the forget set's images and labels (the negative samples),
the retain set's images and labels (the positive samples).

Stage 1 (negative adaptation): a copy of the GAN is trained with its GAN loss on the negative samples, plus an EWC
penalty ``lambda/2 * sum_i F_i (theta_i - theta*_i)^2`` on the generator's parameters, ``theta*`` the original's and
``F`` the diagonal Fisher information of the original generator: the mean over generated samples of the squared
gradient of the discriminator's logit on each one (the reference's ``estimate_fisher``: per-sample gradients of
``D(G(z))``, ``sample_size`` 32). The adapted generator's parameters are ``theta_N``.

Stage 2 (unlearning): the original is trained with its GAN loss on the positive samples plus ``gamma`` x a
repulsion term that pushes the generator's parameters away from ``theta_N``. With ``d`` the reference's distance
(half the mean over the generator's parameter tensors of the mean squared difference to ``theta_N``; its
``calc_difference_param_new`` with one adapted model) the three forms of the paper are ``repulsion=``

- ``"exp"`` (EL2, exponential negative L2): ``100 * exp(-gamma * d)``;
- ``"neg_l2"`` (NL2, negative L2): ``-gamma * d``;
- ``"inverse"`` (IL2, inverse L2): ``gamma / d``;

exactly as the reference writes them (``loss_type`` exp / l2 / reci, ``val_factor = 1 / gamma``).

Class-conditional GAN: in the paper the GAN is unconditional; the adapted GAN generates only negative samples and
stage 2 teaches the original to generate only positive samples, for every latent. Here the generator's input is
``(z, class)``, and the same is asked of every input: in stage 1 each negative image is shown with a class label
drawn uniformly from all classes (the adapted GAN draws the forgotten class whatever it is asked for, so
``theta_N - theta*`` is the direction "generate the forgotten class"); in stage 2 each positive image is shown with
a forgotten class's label with probability equal to that class's share of the original data (forget / (forget +
retain)), so that the forgotten condition, like every other, maps to positive samples (``condition_positives=False``
trains on the retained classes' own labels only and leaves the forgotten class to the repulsion alone). Labels are
drawn from the run's seeded RNG.

Defaults and where they come from (measured in single runs made when choosing them (not benchmark results) on the
embedded GAN, ``expunge.gen.gan()`` trained with its recipe on the 1,437 digits, forgetting class 3; hit rates of 100
samples per class judged by a logistic regression on the real digits; one thread, ~17 s per run):
- stage 1: ``adapt_epochs`` 20 passes over the forget set at ``adapt_lr`` 2e-4 (the GAN's own rate), the other
  optimiser settings as stage 2's; ``ewc_lambda`` 1e3 (the Fisher of this GAN averages 0.05 per parameter; the
  reference's 5e8 is set for its StyleGAN2's Fisher); ``fisher_samples`` 32 (the reference's ``sample_size``).
  In the reference code: 2,000 iterations of batch 16 on ~200 negative samples of a 32x32 StyleGAN2 at lr 0.002;
- stage 2: 10 passes over the retain set, Adam at lr 2e-4 with cosine decay, no clipping, batches of 64 (the
  reference code: Adam at 0.002 with StyleGAN2's betas, batch 16, 3,000 iterations). A constant rate lost retained
  classes (continued GAN training on a restarted Adam oscillates: 66-93% mean retained hit rate after 3-20 epochs
  at 5e-5 to 2e-4); the cosine decay kept them;
- ``repulsion`` "exp" (EL2; the reference's README runs CelebA-HQ with it and MNIST with "l2"), ``gamma`` 1e3.
  The reference's gamma (0.8-1.2) is negligible here: the distance to ``theta_N`` is 1e-6 to 6e-6 and its gradient
  far below the GAN loss's (at an earlier setting, hit rates with gamma 1 and gamma 1e-9 differed by at most 3
  points per class).
Measured with these defaults, class 3 went from 100% to 0%, the retained classes from 100% to 96.4% (their mean);
without the repulsion (gamma 1e-9) 1% and 98.1%; the repulsion alone (``condition_positives=False``) 100% and 74.9%.
On this class-conditional GAN the forgetting comes from training the forgotten condition on positive samples; the
repulsion moves the weights ten times farther from ``theta_N`` (distance 3e-4 against 3e-5) but did not add
measurable forgetting, and alone it cost retained classes without forgetting.

Grid: gamma in {1e2, 1e3, 1e4}, epochs in {5, 10, 20}, repulsion in {exp, neg_l2, inverse}.

Deviations:
- a class-conditional DCGAN-style GAN instead of an unconditional StyleGAN2 with user-flagged generated samples: the
  negative samples are the forget set's real images, the positive samples the retain set's, and the class labels
  they are shown with follow "Class-conditional GAN" above;
- one adapted model (the reference's MNIST scripts adapt two on different negative samples and sum the distances;
  its average ``value / 2 * len(models)`` multiplies by the number of models where it presumably means to divide;
  with one model the two agree);
- the EWC penalty and the repulsion cover all of the generator's parameters (the reference code: the synthesis
  convolutions for EWC, every generator parameter for the repulsion); the discriminator trains without either, as
  there; no R1 or path-length regularisation, no EMA generator, no augmentation (the reference's StyleGAN2 loop);
- both networks step together through ``training.fit`` (``ConditionalGAN.training_loss``) instead of alternating
  discriminator and generator steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from .. import seeds
from ..devices import model_device
from ..training import batches
from ._generative import GenerativeArgs, GenerativeMethod, forget_classes
from .base import Needs, clone, register

REPULSIONS = ("exp", "neg_l2", "inverse")
ADAPT = "adapt-then-unlearn/adapt"          # seed stream of stage 1 (its batches and latents)
FISHER = "adapt-then-unlearn/fisher"        # seed stream of the Fisher samples


@dataclass
class AdaptUnlearnArgs(GenerativeArgs):
    epochs: int = 10
    lr: float = 2e-4
    schedule: str = "cosine"
    clip_grad_norm: float | None = None
    adapt_epochs: int = 20
    adapt_lr: float = 2e-4
    ewc_lambda: float = 1e3
    fisher_samples: int = 32
    repulsion: str = "exp"
    gamma: float = 1e3
    condition_positives: bool = True


@register
class AdaptUnlearn(GenerativeMethod):
    name = "adapt_unlearn"
    summary = ("Adapt a copy of the GAN to the forgotten class with EWC, then train the original on the retained "
               "data with a repulsion from the adapted parameters.")
    paper = "Tiwary et al., Adapt then Unlearn: Exploring Parameter Space Semantics for Unlearning in GANs, TMLR 2025"
    reference = "https://github.com/atriguha/Adapt_Unlearn"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    kinds: ClassVar[tuple[str, ...]] = ("gan",)
    Args = AdaptUnlearnArgs
    grid = {"gamma": [1e2, 1e3, 1e4], "epochs": [5, 10, 20], "repulsion": list(REPULSIONS)}

    def validate(self) -> None:
        super().validate()
        a = self.args
        self.require(("repulsion", a.repulsion in REPULSIONS, " / ".join(REPULSIONS)),
                     ("gamma", a.gamma > 0, "a number > 0"),
                     ("adapt_epochs", 1 <= a.adapt_epochs <= 10_000, "an integer in 1..10000"),
                     ("adapt_lr", a.adapt_lr > 0, "a number > 0"),
                     ("ewc_lambda", a.ewc_lambda >= 0, "a number >= 0"),
                     ("fisher_samples", 1 <= a.fisher_samples <= 100_000, "an integer in 1..100000"))

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        anchor = {n: p.detach().clone() for n, p in model.generator.named_parameters()}
        fisher = generator_fisher(model, a.fisher_samples, seeds.derive(seed, FISHER))
        adapted = self.masked(clone(model))
        stage1 = ewc_loss(anchor, fisher, a.ewc_lambda, model.n_classes)
        self.recipe_fit(adapted, batches(forget, a.batch_size), stage1, seeds.derive(seed, ADAPT),
                        recipe=a.recipe(epochs=a.adapt_epochs, lr=a.adapt_lr))
        theta_n = {n: p.detach().clone() for n, p in adapted.generator.named_parameters()}
        del adapted
        share = len(forget) / (len(forget) + len(retain)) if a.condition_positives else 0.0  # type: ignore[arg-type]
        loss = repelled_loss(theta_n, a.repulsion, a.gamma, forget_classes(forget), share)
        return self.recipe_fit(model, batches(retain, a.batch_size), loss, seed)


def generator_fisher(model: nn.Module, n: int, seed: int) -> dict[str, torch.Tensor]:
    """The diagonal Fisher information of ``model``'s generator as the reference estimates it: the mean over ``n``
    generated samples (labels cycling through the classes, latents from ``seed``) of the squared gradient of the
    discriminator's logit on each sample with respect to the generator's parameters."""
    device = model_device(model)
    params = dict(model.generator.named_parameters())
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    z = torch.randn(n, model.z_dim, generator=torch.Generator().manual_seed(int(seed)), device="cpu").to(device)
    labels = torch.arange(n, device=device) % model.n_classes
    was_training = model.training
    model.eval()
    try:
        for i in range(n):
            logit = model.discriminator(model.generator(z[i:i + 1], labels[i:i + 1]), labels[i:i + 1]).sum()
            grads = torch.autograd.grad(logit, list(params.values()), allow_unused=True)
            for (name, _), g in zip(params.items(), grads):
                if g is not None:
                    total[name] += g.detach() ** 2
    finally:
        model.train(was_training)
    return {name: t / n for name, t in total.items()}


def ewc_loss(anchor: dict[str, torch.Tensor], fisher: dict[str, torch.Tensor], lam: float, n_classes: int):
    """loss_fn of stage 1: the GAN loss on the negative images, each shown with a class label drawn uniformly from
    the ``n_classes`` (the adapted GAN generates negative samples whatever class it is asked for), plus
    ``lam / 2 * sum F (theta - theta*)^2`` over the generator's parameters."""
    def loss_fn(model: nn.Module, batch, ctx) -> torch.Tensor:
        part = batch["data"]
        y = torch.randint(n_classes, (len(part),), device="cpu").to(part.x.device)   # every condition -> negatives
        loss = model.training_loss(part.x, y)
        if lam:
            penalty = sum((fisher[n] * (p - anchor[n]) ** 2).sum() for n, p in model.generator.named_parameters())
            loss = loss + lam / 2 * penalty
        return loss
    return loss_fn


def parameter_distance(model: nn.Module, theta_n: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reference's distance to the adapted generator: half the mean over the generator's parameter tensors of
    the mean squared difference."""
    diffs = [((p - theta_n[n]) ** 2).mean() for n, p in model.generator.named_parameters()]
    return torch.stack(diffs).mean() / 2


def repulsion_term(distance: torch.Tensor, kind: str, gamma: float) -> torch.Tensor:
    """The repulsion loss of the reference's ``loss_type`` (see the module docstring)."""
    if kind == "exp":
        return 100 * torch.exp(-gamma * distance)
    if kind == "neg_l2":
        return -gamma * distance
    if kind == "inverse":
        return gamma / distance.clamp_min(1e-12)
    raise ValueError(f"repulsion={kind!r} is not allowed; expected one of {', '.join(REPULSIONS)}")


def repelled_loss(theta_n: dict[str, torch.Tensor], kind: str, gamma: float, forgotten: list[int], share: float):
    """loss_fn of stage 2: the GAN loss on positive samples (each shown with a forgotten class's label with
    probability ``share``) plus the repulsion from ``theta_n``."""
    def loss_fn(model: nn.Module, batch, ctx) -> torch.Tensor:
        part = batch["data"]
        x, y = part.x, part.y.long()
        if share > 0:
            swap = torch.rand(len(y), device="cpu").to(y.device) < share      # drawn on the CPU, as on every device
            pick = torch.randint(len(forgotten), (len(y),), device="cpu").to(y.device)
            y = torch.where(swap, torch.as_tensor(forgotten, device=y.device)[pick], y)
        return model.training_loss(x, y) + repulsion_term(parameter_distance(model, theta_n), kind, gamma)
    return loss_fn
