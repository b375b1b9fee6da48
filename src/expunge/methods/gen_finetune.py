"""Fine-tune an image generator on the retain set with its own training objective (catastrophic forgetting).

Paper: the fine-tuning baseline of machine unlearning (Warnecke et al., "Machine Unlearning of Features and
Labels", NDSS 2023; FT in Jia et al., NeurIPS 2023 and Fan et al., SalUn, ICLR 2024) carried over to generators:
keep training the original on the retained classes only, with the loss that trained it (``training_loss``: the
denoising loss with classifier-free label dropout for a diffusion model, the adversarial losses for a GAN).
Reference: https://github.com/OPTML-Group/Unlearn-Saliency (the classification ``FT``; its DDPM code has no FT, and
its ``retrain`` mode trains the same loss on the retained classes from scratch).
Needs: retain images with labels; diffusion models and GANs.
Defaults: Adam at lr 1e-4, weight decay 0, gradients clipped at norm 1, constant rate (``GenerativeArgs``: SalUn's
DDPM unlearning optimiser), batches of 64, 5 epochs over the retain set (on digits at 8x8 with one class
forgotten: ~130 steps, under half of what trained the embedded original). No paper fixes these for generators.
Grid: lr in {1e-4, 3e-4, 1e-3}, epochs in {2, 5, 10}.
Deviations: none beyond the choice of defaults. Expect little forgetting: the forgotten class's conditioning (its
class-embedding row) receives no gradient, so the model keeps generating it as long as the shared weights still serve
it. Measured in single runs made when choosing the defaults (not benchmark results), judged by a logistic regression
of the real digits: on the embedded digits diffusion model, forgetting digit 3 with the default settings, 93% -> 90%
of its samples still judged as 3; on the tiny test models (digits 0-3) 10 epochs at lr 3e-3 left 96% (diffusion), and
20 epochs at lr 1e-3 all (GAN).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn
from torch.utils.data import Dataset

from ..training import batches, generative_loss
from ._generative import GenerativeArgs, GenerativeMethod
from .base import Needs, register


@dataclass
class GenFinetuneArgs(GenerativeArgs):
    epochs: int = 5


@register
class GenFinetune(GenerativeMethod):
    name = "gen_finetune"
    summary = "Continue training an image generator on the retained classes with its own loss."
    paper = "Warnecke et al., Machine Unlearning of Features and Labels, NDSS 2023 (FT), for generators"
    reference = "https://github.com/OPTML-Group/Unlearn-Saliency"
    needs = Needs(retain=True, labels=True, forget_labels=False)
    kinds: ClassVar[tuple[str, ...]] = ("diffusion", "gan")
    Args = GenFinetuneArgs
    grid = {"lr": [1e-4, 3e-4, 1e-3], "epochs": [2, 5, 10]}

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        return self.recipe_fit(model, batches(retain, self.args.batch_size), generative_loss("data"), seed)
