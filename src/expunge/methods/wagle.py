"""WAGLE: GradDiff (or NPO) updating only the weights WAGLE's weight attribution ranks highest.

Paper: Jia, Liu, Zhang, Ram, Baracaldo and Liu, "WAGLE: Strategic Weight Attribution for Effective and Modular
Unlearning in Large Language Models", NeurIPS 2024.
Reference: https://github.com/OPTML-Group/WAGLE (mask: ``src/unlearn/generate_mask.py``, ``snip_advanced``;
unlearning: ``src/unlearn/GA.py`` ``GA_FT`` and ``NPO_FT``, the gradient mask in ``src/unlearn/base.py``;
settings: ``configs/unlearn/Tofu/GradDiff+WAGLE.json`` and ``NPO+WAGLE.json``).
Needs: forget and retain sets (questions and answers); the frozen original π_ref for ``objective="npo"`` or
``retain_loss="kl"``.

1. The mask (:func:`expunge.methods._wagle.wagle_masks`): score every weight by |S| = |(θ − ∇ℓ_r/γ) ⊙ ∇ℓ_f| at the
   original weights (ℓ_f, ℓ_r the forget and retain answer NLL; γ = 1e-6 the Hessian-diagonal constant of the
   reference configs) and keep the top ``mask_ratio`` fraction over all weights together.
2. Unlearning with the mask: the paper's main combinations, GradDiff (``objective="grad_diff"``, the default:
   ``grad_diff``'s −γ·NLL_f + α·R) or NPO (``objective="npo"``: ``npo``'s loss with β), trained through the one loop
   with the gradient of every unselected weight zeroed and the weight restored after every step (so weight decay
   and Adam's momentum cannot move it; the reference masks only the gradient, letting AdamW's decoupled weight
   decay shrink the unselected weights).

The same mask is available to every language method as ``mask="wagle"`` (``LanguageMethod``); this method is that
option with GradDiff or NPO, registered under the paper's name. ``mask`` must stay ``"wagle"``; for the unmasked
losses use ``grad_diff`` or ``npo``. Its ``gamma`` and ``alpha`` are the forget and retain weights of those losses
(the mask's Hessian constant γ is fixed at the reference's 1e-6).

Defaults: ``mask_ratio=0.95``: the reference's TOFU configs unlearn with the mask file ``tofu_0.95.pt``, and its
README says a file's number is the fraction of weights selected for unlearning; GradDiff with retain weight α = 1
(``"GA+FT": {"gamma": 1.0}``); NPO's β = 0.1 (``npo``'s default). Training: the configs' 5 epochs; their lr 7e-6
(GradDiff) / 1e-5 (NPO) and weight decay 0.1 are for Llama-2-7B, scaled here to lr 1e-3 (``LanguageArgs``) with the
configs' weight decay of 0.1, batches of 16, a constant rate, clipping at norm 1.
Grid: mask_ratio in {0.2, 0.5, 0.8, 0.95}, lr in {3e-4, 1e-3, 3e-3, 1e-2}, epochs in {5, 10, 20}, alpha in {0.5,
1, 2}, objective in {grad_diff, npo}.

The conformance suite's row (``tests/conformance/test_language_methods.py``) uses settings for its tiny
question/answer task (9 forget facts), not these defaults.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..training import Batch, StepContext, zipped
from ._language import LanguageArgs, LanguageMethod, logits_of
from .base import Needs, register
from .grad_diff import check_weights, grad_diff_loss, reference_logits, reference_model

OBJECTIVES = ("grad_diff", "npo")


@dataclass
class WAGLEArgs(LanguageArgs):
    weight_decay: float = 0.1
    mask: str | None = "wagle"
    mask_ratio: float = 0.95
    objective: str = "grad_diff"
    beta: float = 0.1
    gamma: float = 1.0
    alpha: float = 1.0
    retain_loss: str = "nll"


@register
class WAGLE(LanguageMethod):
    name = "wagle"
    summary = "GradDiff or NPO updating only the weights WAGLE's attribution ranks most influential."
    paper = ("Jia et al., WAGLE: Strategic Weight Attribution for Effective and Modular Unlearning in Large Language "
             "Models, NeurIPS 2024")
    reference = "https://github.com/OPTML-Group/WAGLE"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    Args = WAGLEArgs
    grid = {"mask_ratio": [0.2, 0.5, 0.8, 0.95], "lr": [3e-4, 1e-3, 3e-3, 1e-2], "epochs": [5, 10, 20],
            "alpha": [0.5, 1.0, 2.0], "objective": ["grad_diff", "npo"]}

    def validate(self) -> None:
        super().validate()
        a = self.args
        self.require(("mask", a.mask == "wagle", "'wagle' (this method is the WAGLE mask; for no mask use grad_diff "
                                                 "or npo)"),
                     ("objective", a.objective in OBJECTIVES, f"one of {', '.join(OBJECTIVES)}"),
                     ("beta", a.beta > 0, "a number > 0"))
        check_weights(self)
        self.needs_reference = self.needs_reference or a.objective == "npo"

    def run_language(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        if a.objective == "npo":
            from .npo import npo_loss, sequence_nll

            forget_ref = sequence_nll(reference_model(self), forget, a.batch_size)

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            f, r = batch["forget"], batch["retain"]
            ref_r = reference_logits(self, r, a.retain_loss)
            if a.objective == "npo":
                ref_f = forget_ref[f.positions.to(forget_ref.device)]
                return npo_loss(logits_of(m, f), f.y, ref_f, logits_of(m, r), r.y, beta=a.beta, gamma=a.gamma,
                                alpha=a.alpha, retain_loss=a.retain_loss, retain_reference_logits=ref_r)
            return grad_diff_loss(logits_of(m, f), f.y, logits_of(m, r), r.y, gamma=a.gamma, alpha=a.alpha,
                                  retain_loss=a.retain_loss, retain_reference_logits=ref_r)

        plan = zipped(("forget", forget, a.batch_size), ("retain", retain, a.batch_size))
        return self.fit_language(model, plan, loss_fn, seed)
