"""NPO: Negative Preference Optimization, DPO with the forget answers as the only (dispreferred) responses.

Paper: Zhang, Lin, Bai and Mei, "Negative Preference Optimization: From Catastrophic Collapse to Effective
Unlearning", COLM 2024.
Reference: https://github.com/licong-lin/negative-preference-optimization (``TOFU/dataloader.py``, loss
``npo_grad_diff`` / ``npo_KL``, ``TOFU/config/forget.yaml``) and https://github.com/locuslab/open-unlearning
(``src/trainer/unlearn/npo.py``, ``src/trainer/utils.py: compute_dpo_loss``, ``configs/trainer/NPO.yaml``).
Needs: forget and retain sets (questions and answers) and the frozen original π_ref.

Loss on a zipped forget/retain batch (the forget set sets the epoch; retain batches are cycled):

    L = γ·(2/β)·E_f[−log σ(−β·(log π_θ(y|x) − log π_ref(y|x)))] + α·R

with log π(y|x) the **sum** of the answer tokens' log-probabilities (both references' convention), the
expectation a mean over the batch's forget sequences, and R the retain term of ``grad_diff``: the mean answer-token
NLL of the retain batch (``retain_loss="nll"``, the paper's NPO-RT) or KL(π_ref ‖ π_θ) over the positions that
predict retain answer tokens (``"kl"``, the paper's NPO-KL; see ``grad_diff`` for how it departs from
OpenUnlearning's average over every position). At θ = θ_ref the forget gradient equals gradient ascent on the
summed answer NLL; the weight σ(β·(log π_θ − log π_ref)) then shrinks as the forget answers become unlikely,
which is what keeps NPO from collapsing. (:func:`npo_forget_loss`, :func:`npo_loss`.)

Deviations: π_ref's summed answer NLLs on the forget set are computed once before training (π_ref is frozen), not at
every step as in both references (the same values up to rounding); the KL retain term covers the positions that
predict answer tokens only (see ``grad_diff``).

Defaults: β = 0.1, γ = α = 1, ``retain_loss="nll"`` (``configs/trainer/NPO.yaml``; the paper's ``forget.yaml``:
beta 0.1, npo_coeff 1, grad_diff_coeff 1). Training settings as ``grad_ascent``: both references train 10 epochs
with one warmup epoch and weight decay 0.01 at lr 1e-5 (pretrained 1B-7B models); here lr 1e-3 and batches of 16
for the ~1M-parameter models trained from scratch, linear decay after a 10% warmup, AdamW, clipping at norm 1.
Grid: lr in {1e-4, 3e-4, 1e-3, 3e-3, 1e-2}, epochs in {2, 5, 10}, beta in {0.05, 0.1, 0.5}, alpha in {0.5, 1, 2}.
Runs through LoRA adapters (``lora={"r": 8}``) need the top of the lr range: on the tiny test task rank-8 adapters
on q/v forget at lr 1e-2 (12 epochs, β 0.5, α 2: forget NLL 0.94, retain 0.43) and barely move at 3e-3.

The conformance suite's row (``tests/conformance/test_language_methods.py``) holds settings for its tiny
question/answer task (9 forget facts, one batch per epoch), not these defaults: lr 1e-3, 15 epochs, β 0.5, α 2
(forget NLL 0.05 -> 1.02, oracle 2.87; retain 0.28, oracle 0.10).
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
from .grad_diff import check_weights, reference_logits, reference_model, retain_term


def npo_forget_loss(logits: torch.Tensor, labels: torch.Tensor, reference_nll: torch.Tensor,
                    beta: float) -> torch.Tensor:
    """(2/β)·mean over sequences of −log σ(−β·(log π_θ(y|x) − log π_ref(y|x))), log-probabilities summed
    over each sequence's labelled tokens; ``reference_nll`` [B] holds −log π_ref(y|x) of each sequence."""
    from ..lm.losses import answer_nll

    nll, _ = answer_nll(logits, labels)
    log_ratio = reference_nll - nll                 # log π_θ(y|x) − log π_ref(y|x)
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


def npo_loss(forget_logits: torch.Tensor, forget_labels: torch.Tensor, forget_reference_nll: torch.Tensor,
             retain_logits: torch.Tensor, retain_labels: torch.Tensor, *, beta: float = 0.1, gamma: float = 1.0,
             alpha: float = 1.0, retain_loss: str = "nll",
             retain_reference_logits: torch.Tensor | None = None) -> torch.Tensor:
    """γ·NPO(forget) + α·R (see the module docstring)."""
    return (gamma * npo_forget_loss(forget_logits, forget_labels, forget_reference_nll, beta)
            + alpha * retain_term(retain_loss, retain_logits, retain_labels, retain_reference_logits))


def sequence_nll(model: nn.Module, dataset: Dataset, batch_size: int) -> torch.Tensor:
    """Each sequence's summed answer NLL under ``model`` (frozen), ``[N]`` in the dataset's order, on the model's
    device; computed once, since π_ref does not change while the method trains."""
    from ..data.datasets import resolve
    from ..devices import autocast, model_device, move
    from ..lm.losses import answer_nll

    base, idx = resolve(dataset)
    device = model_device(model)
    out = []
    with torch.no_grad(), autocast(device):
        for chunk in idx.split(batch_size):
            out.append(answer_nll(model(move(base.x[chunk], device)), move(base.y[chunk], device))[0].float())
    return torch.cat(out)


@dataclass
class NPOArgs(LanguageArgs):
    epochs: int = 10
    schedule: str = "linear"
    warmup: float = 0.1
    beta: float = 0.1
    gamma: float = 1.0
    alpha: float = 1.0
    retain_loss: str = "nll"


@register
class NPO(LanguageMethod):
    name = "npo"
    summary = "Negative preference optimisation: push the forget answers below the original's likelihood."
    paper = ("Zhang et al., Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning, "
             "COLM 2024")
    reference = "https://github.com/licong-lin/negative-preference-optimization"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    needs_reference = True
    Args = NPOArgs
    grid = {"lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "epochs": [2, 5, 10], "beta": [0.05, 0.1, 0.5],
            "alpha": [0.5, 1.0, 2.0]}

    def validate(self) -> None:
        super().validate()
        self.require(("beta", self.args.beta > 0, "a number > 0"))
        check_weights(self)

    def run_language(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        forget_ref = sequence_nll(reference_model(self), forget, a.batch_size)

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            f, r = batch["forget"], batch["retain"]
            ref = forget_ref[f.positions.to(forget_ref.device)]
            return npo_loss(logits_of(m, f), f.y, ref, logits_of(m, r), r.y, beta=a.beta, gamma=a.gamma,
                            alpha=a.alpha, retain_loss=a.retain_loss,
                            retain_reference_logits=reference_logits(self, r, a.retain_loss))

        plan = zipped(("forget", forget, a.batch_size), ("retain", retain, a.batch_size))
        return self.fit_language(model, plan, loss_fn, seed)
