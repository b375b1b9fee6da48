"""FLAT: loss adjustment with only forget data, maximising an f-divergence between template and forget answers.

Paper: Wang et al., "LLM Unlearning via Loss Adjustment with Only Forget Data", ICLR 2025 (arXiv 2410.11143).
Reference: https://github.com/UCSC-REAL/FLAT (``dataloader.py``: ``CustomTrainerForgetting.compute_loss`` with
``loss_type == "cl"``, the one loss that reads the ``variants`` divergence, ``ProbLossStable``,
``get_contrastive_loss``; ``config/forget.yaml``, whose ``forget_loss: GLS`` names no loss that ``dataloader.py``
defines).
Needs: forget questions and answers only: no retain set and no reference model.

Each forget question x is paired with a template answer y_e (a refusal such as "I don't know") next to its forget
answer y_f. FLAT maximises the variational lower bound of an f-divergence D_f between the two answers' model
probabilities, D_f ≥ E[g(P_e)] − E[f*(g(P_f))] (Nowozin et al., f-GAN, NeurIPS 2016), so the loss is

    L = mean_batch[ −g(P_e) + f*(g(P_f)) ],   P = mean over the answer's tokens of π_θ(y_t | x, y_<t)

with g the output activation of the variational function and f* the convex conjugate of f (:func:`flat_loss`):

    divergence   g(v)                     f*(t)
    "tv"         ½·tanh(v)                t                (total variation: the default)
    "kl"         v                        exp(t − 1)
    "js"         log 2 − log(1 + e^(−v))  −log(2 − e^t)    (Jensen-Shannon)
    "pearson"    v                        t²/4 + t         (Pearson χ²)

Minimising it raises the template's probability and lowers the forget answer's, each weighted by the slope of its
term: the "loss adjustment" (importance weights) of the paper. The template answers default to
:data:`expunge.data.authors.IDK_ANSWERS` (``idk_answers=`` replaces them; the reference reads TOFU's
``data/idontknow.jsonl``); each forget question gets a template drawn afresh every time it is read (once
per epoch), as the reference's datasets do, here under ``expunge.seeds.derive(seed, "idk-answers", epoch)``.

Defaults: total variation, the reference code's default (``config/forget.yaml``: ``variants: Total-Variation``;
``get_contrastive_loss(..., div='Total-Variation')``); the reference also offers reverse KL, Jeffrey, squared
Hellinger and Neyman, left out here. Which divergence the paper's TOFU tables use by default could not be
confirmed from the text available here. Training: ``config/forget.yaml`` and ``unlearn.py`` run 5 epochs
with weight decay 0.01 at lr 1e-5 on Llama-2-7B (effective batch 64), about one epoch of warmup, then HF's linear
decay; here the same schedule (5 epochs, 20% warmup, linear decay) at lr 1e-3 for the ~1M-parameter models trained
from scratch (``LanguageArgs``), batches of 16.
Grid: lr in {3e-4, 1e-3, 3e-3}, epochs in {5, 10, 20}, divergence in {tv, kl, js, pearson}.
Tiny conformance task (24 people x 3 facts, 9 forget rows, one step per epoch): ``lr=5e-4, epochs=19`` (settings
for that task, not the defaults). Without retain data the forget and retain answers' NLL rise together there (their
questions share templates; the retain rise is about 0.5 of the forget rise), so only a narrow band of settings
(18-21 epochs at that rate) moves the forget answers far enough while keeping the retain answers.

Deviations from the reference code, following the paper's per-example objective: the reference's
``ProbLossStable`` gives the probability of every position of the padded batch (0 on the question and padding),
and ``compute_loss`` averages those over the whole batch before applying g and f*, so P is diluted by question and
padding length and the divergence terms see one number per batch. Here P is each answer's mean token probability
over its own answer tokens, and g and f* are applied per example before averaging over the batch (the expectation
of the variational form). Could not be confirmed: the paper's exact normalisation of P (the code was the guide).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..lm.losses import token_nll
from ..training import Batch, StepContext
from ._idk import idk_answers_problem, paired
from ._language import LanguageArgs, LanguageMethod, logits_of
from .base import Needs, register

LOG2 = math.log(2.0)

#: divergence -> (g, the variational function's output activation; f*(g(v)), the conjugate at g(v))
DIVERGENCES: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "tv": (lambda v: 0.5 * torch.tanh(v), lambda v: 0.5 * torch.tanh(v)),
    "kl": (lambda v: v, lambda v: torch.exp(v - 1.0)),
    "js": (lambda v: LOG2 - F.softplus(-v), lambda v: F.softplus(v) - LOG2),   # −log(2 − e^g(v)), stably
    "pearson": (lambda v: v, lambda v: v * v / 4.0 + v),
}


def answer_probability(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[B]``: each sequence's mean next-token probability over its labelled (answer) tokens."""
    nll = token_nll(logits, labels)
    keep = (labels[:, 1:] != -100).to(nll.dtype)
    return (torch.exp(-nll) * keep).sum(1) / keep.sum(1).clamp_min(1)


def flat_loss(template_logits: torch.Tensor, template_labels: torch.Tensor, forget_logits: torch.Tensor,
              forget_labels: torch.Tensor, *, divergence: str = "tv") -> torch.Tensor:
    """mean_batch[−g(P_e) + f*(g(P_f))] (see the module docstring): P_e, P_f the template and forget answers'
    mean token probabilities, row i of both batches the same question."""
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence={divergence!r} is not allowed; expected one of {', '.join(DIVERGENCES)}")
    g, conjugate_of_g = DIVERGENCES[divergence]
    p_template = answer_probability(template_logits, template_labels)
    p_forget = answer_probability(forget_logits, forget_labels)
    return (-g(p_template) + conjugate_of_g(p_forget)).mean()


@dataclass
class FlatArgs(LanguageArgs):
    epochs: int = 5
    schedule: str = "linear"
    warmup: float = 0.2
    divergence: str = "tv"
    idk_answers: list[str] | None = None


@register
class Flat(LanguageMethod):
    name = "flat"
    summary = ("Maximise an f-divergence between template (\"I don't know\") and forget answers; forget data "
               "only.")
    paper = "Wang et al., LLM Unlearning via Loss Adjustment with Only Forget Data, ICLR 2025"
    reference = "https://github.com/UCSC-REAL/FLAT"
    needs = Needs(retain=False, labels=True, forget_labels=True)
    Args = FlatArgs
    grid = {"lr": [3e-4, 1e-3, 3e-3], "epochs": [5, 10, 20], "divergence": list(DIVERGENCES)}

    def validate(self) -> None:
        super().validate()
        problem = idk_answers_problem(self.args.idk_answers)
        self.require(("divergence", self.args.divergence in DIVERGENCES, f"one of {', '.join(DIVERGENCES)}"),
                     ("idk_answers", problem is None, problem or ""))

    def run_language(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            f, e = batch["forget"], batch["idk"]
            return flat_loss(logits_of(m, e), e.y, logits_of(m, f), f.y, divergence=a.divergence)

        plan = paired(self.name, forget, a.idk_answers, seed, a.batch_size)
        return self.fit_language(model, plan, loss_fn, seed)
