"""LAF (Label-Agnostic Forgetting): unlearning at the representation level, without reading any label.

Paper: Shen et al., "Label-Agnostic Forgetting: A Supervision-Free Unlearning in Deep Models", ICLR 2024.
Reference: https://github.com/ShaofeiShen768/LAF (``Train.vae_train``, ``VUnlearning.extractor_unlearning``,
``Model.VariationalAutoencoder``; settings in ``hyperparameter.md`` and ``LAF.ipynb``).

The model is split into an extractor (its output is the embedding e) and a head; only the extractor changes.

1. VAE training: two small VAEs on the original's embeddings, one (h_R) on the retain set, one (h_F) on the forget
   set; loss ‖ê − e‖² (summed over dimensions) + 0.025·KL(q(z|e) ‖ N(0, I)), both averaged over the batch.
2. Unlearning, per pair of a forget batch and a (cycled) retain batch, two steps in turn:
   - extractor unlearning: minimise nmse(h_R(e_R), e_R) − nmse(h_F(e_F), e_F), with
     nmse(ê, e) = Σ_i exp(m_i / (m_i + 1)), m_i = ‖ê_i − e_i‖²: retain embeddings stay where the retain VAE
     reconstructs them, forget embeddings move to where the forget VAE cannot;
   - representation alignment (contrastive): with d = 1 − cos(e, e₀) between an embedding and the frozen
     original's, minimise Σ_{i∈R} [d_i − log Σ_{j∈F} exp(d_j / τ)]: retain embeddings align with the original's,
     forget embeddings are pushed away from theirs.
   The two VAEs are frozen; the original's embeddings are computed once (they are the frozen teacher's).

Needs: forget and retain data, features only; no label is read anywhere. Classification (as in the paper).
Defaults: the paper's VAE settings (10 epochs, Adam lr 1e-3, batch 32, KL weight 0.025, latent 8 as for its CNN)
and τ = 20 (its class-unlearning setting); ``extract_weight`` 0.5 is the reference's ratio lr_ue / lr_ra for its
MNIST CNN (5e-5 / 1e-4). The unlearning steps use Adam at lr 1e-3 for 60 epochs with batches of 16, chosen on
scikit-learn digits, where the reference's settings (20 epochs at lr 5e-5 / 1e-4, batch 32) change nothing because
a small forget set gives few steps: forgetting the digit 0 there takes forget accuracy from 100% to 0% (retraining:
0%) with remaining-class test accuracy 96.0–96.3% over seeds 0–2 (retraining: 96.3%), in about three seconds on
a CPU; with the reference's settings forget accuracy stays at 98.6%. Scale ``epochs`` down for large forget sets.
Grid: lr in {3e-4, 1e-3, 3e-3}, epochs in {20, 40, 60}, temperature in {5, 20}, latent_dim in {8, 16},
extract_weight in {0.2, 0.5, 1}.

The embedding is the input of the model's last layer, the ``nn.Linear`` whose output is the model's output (for
the built-in models, the output of their ``features``), found by a forward pass; the extractor is every parameter
but that layer's. Any model whose last layer is an ``nn.Linear`` works as it is. ``extractor`` (default None)
instead names the submodule whose output is the embedding; a model that ends otherwise needs it.

Deviations from the reference, each following the paper's description:
(a) the retain VAE is trained on the retain embeddings (the reference notebook trains it on the whole training
    set, forget set included); (b) the VAE decoder's output is linear, since embeddings are not confined to (0, 1)
    (the reference ends it with a sigmoid); (c) as in the reference, each kind of step has its own Adam optimiser
    (``fit``'s ``tag_lr``): the alignment step at ``lr`` and the extractor-unlearning step at
    ``extract_weight · lr`` (the reference's lr_ra and lr_ue). Sharing one Adam between the two steps does not
    work: the extractor-unlearning gradient, some 40 times larger, dominates the shared statistics and the
    alignment step stops protecting the retain set (digits: remaining-class test accuracy 42% instead of 96%);
    (d) the model runs in inference mode during unlearning (BatchNorm keeps its running statistics, dropout is
    off), as it does in the reference, where VAE training leaves it in eval mode, so the embeddings compared with
    the VAEs and the teacher are those the model produces at test time.
The semi-supervised LAF+R variant (retraining the head on labelled retain data) is not provided.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..training import Batch, Plan, Recipe, StepContext, batches, fit, zipped
from ._common import frozen
from ._embedding import embed, embed_all, extractor_parameters, find_split, probe_of
from .base import Method, Needs, TrainArgs, register


@dataclass
class LafArgs(TrainArgs):
    epochs: int = 60
    lr: float = 1e-3
    batch_size: int = 16
    forget_batch_size: int = 16
    optimizer: str = "adam"
    weight_decay: float = 0.0
    temperature: float = 20.0
    latent_dim: int = 8
    vae_epochs: int = 10
    vae_lr: float = 1e-3
    vae_batch_size: int = 32
    kl_weight: float = 0.025
    extract_weight: float = 0.5
    extractor: str | None = None


class EmbeddingVAE(nn.Module):
    """A small VAE over embeddings: dim → 128 → 32 → (μ, log σ²) in ``latent`` dimensions, and back."""

    def __init__(self, dim: int, latent: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU())
        self.mu = nn.Linear(32, latent)
        self.logvar = nn.Linear(32, latent)
        self.decoder = nn.Sequential(nn.Linear(latent, 32), nn.ReLU(), nn.Linear(32, 128), nn.ReLU(),
                                     nn.Linear(128, dim))

    def forward(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encoder(e)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decoder(z), mu, logvar


def vae_loss(recon: torch.Tensor, e: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             kl_weight: float) -> torch.Tensor:
    """Squared reconstruction error summed over dimensions plus ``kl_weight``·KL(N(μ, σ²) ‖ N(0, I)), both averaged
    over the batch."""
    mse = (recon - e).pow(2).sum(1).mean()
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(1).mean()
    return mse + kl_weight * kl


def nmse(recon: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Σ_i exp(m_i / (m_i + 1)) with m_i = ‖recon_i − e_i‖²: a reconstruction error bounded per example."""
    m = (recon - e).pow(2).sum(1)
    return torch.exp(m / (m + 1)).sum()


def alignment_loss(e_retain: torch.Tensor, t_retain: torch.Tensor, e_forget: torch.Tensor, t_forget: torch.Tensor,
                   temperature: float) -> torch.Tensor:
    """Σ_{i∈R} [d_i − log Σ_{j∈F} exp(d_j / τ)] with d = 1 − cos(embedding, teacher embedding)."""
    d_retain = 1 - F.cosine_similarity(e_retain, t_retain, dim=1)
    d_forget = 1 - F.cosine_similarity(e_forget, t_forget, dim=1)
    return (d_retain - torch.logsumexp(d_forget / temperature, dim=0)).sum()


def each_with_tags(plan: Plan, tags: tuple[str, ...]) -> Plan:
    """Every batch of ``plan`` once per tag, in turn (one step of each kind per batch)."""
    def tagged(epoch: int, g: torch.Generator) -> list[Batch]:
        return [Batch(b.parts, t) for b in plan(epoch, g) for t in tags]
    return tagged


@register
class LAF(Method):
    name = "laf"
    summary = "Label-free: reshape the extractor with two embedding VAEs, align retain embeddings contrastively."
    paper = "Shen et al., Label-Agnostic Forgetting: A Supervision-Free Unlearning in Deep Models, ICLR 2024"
    reference = "https://github.com/ShaofeiShen768/LAF"
    needs = Needs(retain=True, labels=False, forget_labels=False)
    tasks = ("classification",)
    Args = LafArgs
    grid = {"lr": [3e-4, 1e-3, 3e-3], "epochs": [20, 40, 60], "temperature": [5.0, 20.0], "latent_dim": [8, 16],
            "extract_weight": [0.2, 0.5, 1.0]}

    def validate(self) -> None:
        super().validate()
        a = self.args
        self.require(("temperature", a.temperature > 0, "a number > 0"),
                     ("latent_dim", a.latent_dim >= 1, "an integer >= 1"),
                     ("vae_epochs", a.vae_epochs >= 1, "an integer >= 1"), ("vae_lr", a.vae_lr > 0, "a number > 0"),
                     ("vae_batch_size", a.vae_batch_size >= 1, "an integer >= 1"),
                     ("forget_batch_size", a.forget_batch_size >= 1, "an integer >= 1"),
                     ("kl_weight", a.kl_weight >= 0, "a number >= 0"),
                     ("extract_weight", a.extract_weight >= 0, "a number >= 0"),
                     ("extractor", a.extractor is None or (isinstance(a.extractor, str) and bool(a.extractor)),
                      "None (split at the model's last nn.Linear layer) or the name of its extractor submodule"))

    def train_vae(self, embeddings: torch.Tensor, data: Dataset, seed: int, which: str) -> EmbeddingVAE:
        """A VAE fitted to ``embeddings`` (row i belongs to example i of ``data``), then frozen."""
        a = self.args
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            with torch.device("cpu"):             # drawn on the CPU, then moved: the same VAE on every device
                vae = EmbeddingVAE(embeddings.shape[1], a.latent_dim)
        vae = vae.to(embeddings.device)

        def loss_fn(v: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            e = embeddings[batch["data"].positions]
            recon, mu, logvar = v(e)
            return vae_loss(recon, e, mu, logvar, a.kl_weight)

        recipe = Recipe(epochs=a.vae_epochs, lr=a.vae_lr, batch_size=a.vae_batch_size, optimizer="adam",
                        weight_decay=0.0, schedule="constant")
        fit(vae, batches(data, a.vae_batch_size), recipe=recipe, loss_fn=loss_fn, seed=seed,
            name=f"{self.name}:{which}-vae")
        return frozen(vae)

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        split = find_split(model, probe_of(forget), method=self.name, extractor=a.extractor)
        teacher_f = embed_all(model, split, forget)
        teacher_r = embed_all(model, split, retain)
        retain_vae = self.train_vae(teacher_r, retain, seed, "retain")
        forget_vae = self.train_vae(teacher_f, forget, seed + 1, "forget")

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            m.eval()
            f, r = batch["forget"], batch["retain"]
            e_f, e_r = embed(m, split, f.x), embed(m, split, r.x)
            if batch.tag == "extract":
                return nmse(retain_vae(e_r)[0], e_r) - nmse(forget_vae(e_f)[0], e_f)
            return alignment_loss(e_r, teacher_r[r.positions], e_f, teacher_f[f.positions], a.temperature)

        plan = each_with_tags(zipped(("forget", forget, a.forget_batch_size), ("retain", retain, a.batch_size)),
                              ("extract", "align"))
        params = extractor_parameters(model, split)
        return fit(model, plan, recipe=a.recipe(), seed=seed + 2, name=self.name, loss_fn=loss_fn, params=params,
                   tag_lr={"extract": a.extract_weight, "align": 1.0}, step_hooks=self.step_hooks())

