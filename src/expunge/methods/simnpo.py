"""SimNPO: NPO without a reference model, with length-normalised answer likelihoods and a reward margin.

Paper: Fan, Liu, Lin, Jia, Zhang, Mei and Liu, "Simplicity Prevails: Rethinking Negative Preference Optimization
for LLM Unlearning", arXiv:2410.07163, 2024.
Reference: https://github.com/OPTML-Group/Unlearn-Simple (``TOFU/dataloader.py``, loss ``simnpo_grad_diff``;
``TOFU/config/forget.yaml``) and https://github.com/locuslab/open-unlearning (``src/trainer/unlearn/simnpo.py``,
``configs/trainer/SimNPO.yaml``).
Needs: forget and retain sets (questions and answers); no reference model (π_ref only with ``retain_loss="kl"``).

Loss on a zipped forget/retain batch (the forget set sets the epoch; retain batches are cycled):

    L = w·(2/β)·E_f[−log σ(−(β/|y|)·log π_θ(y|x) − γ)] + α·R

with log π_θ(y|x) the sum of the answer tokens' log-probabilities, |y| the number of labelled answer tokens (the
eos included), the expectation a mean over the batch's forget sequences, w the forget term's weight
(``forget_weight``), γ the reward margin (``gamma``) and R the retain term of ``grad_diff`` (mean answer-token NLL
of the retain batch, or KL(π_ref ‖ π_θ) with ``retain_loss="kl"``). (:func:`simnpo_forget_loss`,
:func:`simnpo_loss`.)

Deviation from the reference code: both reference implementations compute −(2/β)·log σ(β·(NLL/|y| − δ)), i.e. the
margin sits inside the β scaling, so their δ is the paper's γ/β. Here ``gamma`` is the paper's γ, outside the scaling
as in the paper's equation (its intent); OpenUnlearning's ``delta`` corresponds to ``gamma = beta·delta`` (the same
loss). With the default margin 0 the two agree exactly. Naming: OpenUnlearning calls the forget weight ``gamma`` (the
authors' ``npo_coeff``) and the margin ``delta``; here the forget weight is ``forget_weight`` and ``gamma`` is the
paper's margin, so ``gamma`` means the margin in this method but the forget weight in ``grad_diff`` and ``npo``.

Defaults: β = 4.5, forget weight 0.125, margin 0, α = 1, ``retain_loss="nll"`` (``configs/trainer/SimNPO.yaml``;
the authors' TOFU ``forget.yaml`` has β 2.5, npo_coeff 0.1375, γ 0, grad_diff_coeff 1). Training settings as
``grad_ascent`` (both references: 10 epochs, one warmup epoch, weight decay 0.01, lr 1e-5 on pretrained 7B-8B
models; here lr 1e-3 and batches of 16 for the ~1M-parameter models trained from scratch, linear decay after a 10%
warmup, AdamW, clipping at norm 1). With β = 4.5 the forget gradient's weight 2σ(−(β·NLL/|y| − γ)) falls below
0.05 once the answers' NLL passes about 0.8 nats per token, so SimNPO stops pushing early; smaller β pushes further.
Grid: lr in {1e-4, 3e-4, 1e-3, 3e-3, 1e-2}, epochs in {2, 5, 10}, beta in {1, 2.5, 4.5}, forget_weight in
{0.125, 0.5, 1}, gamma in {0, 1}.

The conformance suite's row (``tests/conformance/test_language_methods.py``) holds settings for its tiny
question/answer task (9 forget facts, one batch per epoch), not these defaults: lr 3e-3, 10 epochs, forget weight 1
(forget NLL 0.05 -> 0.96, oracle 2.87; retain 0.10, oracle 0.10).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..training import Batch, StepContext, zipped
from ._language import LanguageArgs, LanguageMethod, logits_of
from .base import Needs, register
from .grad_diff import check_weights, reference_logits, retain_term


def simnpo_forget_loss(logits: torch.Tensor, labels: torch.Tensor, beta: float, gamma: float = 0.0) -> torch.Tensor:
    """(2/β)·mean over sequences of −log σ(−(β/|y|)·log π_θ(y|x) − γ), with log π_θ(y|x) summed over
    each sequence's labelled tokens and |y| their number."""
    from ..lm.losses import answer_nll

    nll, n = answer_nll(logits, labels)
    return -(2.0 / beta) * F.logsigmoid(beta * nll / n.clamp_min(1) - gamma).mean()


def simnpo_loss(forget_logits: torch.Tensor, forget_labels: torch.Tensor, retain_logits: torch.Tensor,
                retain_labels: torch.Tensor, *, beta: float = 4.5, gamma: float = 0.0, forget_weight: float = 0.125,
                alpha: float = 1.0, retain_loss: str = "nll",
                retain_reference_logits: torch.Tensor | None = None) -> torch.Tensor:
    """w·SimNPO(forget) + α·R (see the module docstring)."""
    return (forget_weight * simnpo_forget_loss(forget_logits, forget_labels, beta, gamma)
            + alpha * retain_term(retain_loss, retain_logits, retain_labels, retain_reference_logits))


@dataclass
class SimNPOArgs(LanguageArgs):
    epochs: int = 10
    schedule: str = "linear"
    warmup: float = 0.1
    beta: float = 4.5
    gamma: float = 0.0
    forget_weight: float = 0.125
    alpha: float = 1.0
    retain_loss: str = "nll"


@register
class SimNPO(LanguageMethod):
    name = "simnpo"
    summary = "NPO without a reference model: length-normalised forget likelihoods with a margin."
    paper = ("Fan et al., Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning, "
             "arXiv:2410.07163, 2024")
    reference = "https://github.com/OPTML-Group/Unlearn-Simple"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    Args = SimNPOArgs
    grid = {"lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "epochs": [2, 5, 10], "beta": [1.0, 2.5, 4.5],
            "forget_weight": [0.125, 0.5, 1.0], "gamma": [0.0, 1.0]}

    def validate(self) -> None:
        super().validate()
        self.require(("beta", self.args.beta > 0, "a number > 0"),
                     ("gamma", self.args.gamma >= 0, "a margin >= 0"))
        check_weights(self, forget_weight="forget_weight")

    def run_language(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            f, r = batch["forget"], batch["retain"]
            return simnpo_loss(logits_of(m, f), f.y, logits_of(m, r), r.y, beta=a.beta, gamma=a.gamma,
                               forget_weight=a.forget_weight, alpha=a.alpha, retain_loss=a.retain_loss,
                               retain_reference_logits=reference_logits(self, r, a.retain_loss))

        plan = zipped(("forget", forget, a.batch_size), ("retain", retain, a.batch_size))
        return self.fit_language(model, plan, loss_fn, seed)
