"""IdkDPO: direct preference optimisation with an "I don't know" answer preferred over each forget answer.

Papers: Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs", COLM 2024 (the preference-optimisation
baseline with "I don't know" as the preferred answer), on Rafailov et al., "Direct Preference Optimization: Your
Language Model is Secretly a Reward Model", NeurIPS 2023.
Reference: https://github.com/locuslab/open-unlearning (``src/trainer/unlearn/dpo.py``, ``src/trainer/utils.py:
compute_dpo_loss``, ``configs/trainer/DPO.yaml``, ``configs/experiment/unlearn/tofu/idk.yaml``: the ``IdkDPO``
setting, DPO on ``TOFU_QA_forget_idk``); TOFU's own ``dpo`` loss in https://github.com/locuslab/tofu
(``dataloader.py``).
Needs: forget questions and answers, the retain set, and the frozen original π_ref.

Loss on a batch of forget questions x with their answers y_f and refusals y_idk, and a retain batch:

    L = γ·(2/β)·mean_batch[−log σ(β·(Δ_idk − Δ_f))] + α·R
    Δ = log π_θ(y|x) − log π_ref(y|x)   (log-probabilities summed over the answer tokens)

R = NLL_r, the mean answer-token NLL of the retain batch (``retain_loss="nll"``), or KL(π_ref ‖ π_θ) on it
(``retain_loss="kl"``), as in ``grad_diff`` (:func:`idk_dpo_loss`; :func:`expunge.methods.grad_diff.retain_term`).
The refusals default to :data:`expunge.data.authors.IDK_ANSWERS` (``idk_answers=`` replaces them); each forget
question gets a refusal drawn afresh every time it is read (once per epoch), as OpenUnlearning's
``QAwithIdkDataset`` does, here under ``expunge.seeds.derive(seed, "idk-answers", epoch)``.

Defaults: β = 0.1, γ = α = 1, ``retain_loss="nll"`` (``configs/trainer/DPO.yaml``). OpenUnlearning's ``idk``
experiment trains 10 epochs with one warmup epoch (HF's linear schedule) and weight decay 0.01 at lr 1e-5 on 1B-8B
pretrained models; here lr 1e-3 for the ~1M-parameter models trained from scratch (``LanguageArgs``), 10 epochs,
10% warmup then linear decay, batches of 16 forget and 16 retain rows, as ``grad_diff``.
Grid: lr in {3e-4, 1e-3, 3e-3}, epochs in {5, 10, 20}, beta in {0.05, 0.1, 0.5}, alpha in {0.5, 1, 2}.
Tiny conformance task (24 people x 3 facts, 9 forget rows, one step per epoch): ``lr=1e-2, epochs=25`` (settings
for that task, not the defaults).

Kept from OpenUnlearning: the 2/β factor (absent from TOFU's ``dpo`` loss and from DPO itself) and the summed,
not length-normalised, answer log-probabilities.

Deviations: none in the loss; the retain batches are cycled and reshuffled on each pass over the forget set
(OpenUnlearning's ``anchor: forget``), as in ``grad_diff``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..lm.losses import answer_nll
from ..training import Batch, StepContext
from ._idk import idk_answers_problem, paired
from ._language import LanguageArgs, LanguageMethod, logits_of
from .base import Needs, register
from .grad_diff import check_weights, reference_logits, reference_model, retain_term


def idk_dpo_loss(idk_logits: torch.Tensor, idk_labels: torch.Tensor, forget_logits: torch.Tensor,
                 forget_labels: torch.Tensor, reference_idk_logits: torch.Tensor,
                 reference_forget_logits: torch.Tensor, *, beta: float = 0.1) -> torch.Tensor:
    """The DPO term (2/β)·mean[−log σ(β·(Δ_idk − Δ_f))] with the refusal preferred over the forget answer
    (each row of the two batches is the same question); Δ = log π_θ − log π_ref, summed over answer tokens."""
    idk_nll, _ = answer_nll(idk_logits, idk_labels)
    forget_nll, _ = answer_nll(forget_logits, forget_labels)
    with torch.no_grad():
        ref_idk_nll, _ = answer_nll(reference_idk_logits, idk_labels)
        ref_forget_nll, _ = answer_nll(reference_forget_logits, forget_labels)
    delta_idk = ref_idk_nll - idk_nll            # log π_θ(y_idk|x) − log π_ref(y_idk|x)
    delta_forget = ref_forget_nll - forget_nll
    return -(2.0 / beta) * F.logsigmoid(beta * (delta_idk - delta_forget)).mean()


@dataclass
class IdkDPOArgs(LanguageArgs):
    epochs: int = 10
    schedule: str = "linear"
    warmup: float = 0.1
    beta: float = 0.1
    gamma: float = 1.0
    alpha: float = 1.0
    retain_loss: str = "nll"
    idk_answers: list[str] | None = None


@register
class IdkDPO(LanguageMethod):
    name = "idk_dpo"
    summary = "DPO preferring an \"I don't know\" answer over each forget answer, with a retain term."
    paper = ("Maini et al., TOFU: A Task of Fictitious Unlearning for LLMs, COLM 2024; Rafailov et al., Direct "
             "Preference Optimization, NeurIPS 2023")
    reference = "https://github.com/locuslab/open-unlearning"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    needs_reference = True
    Args = IdkDPOArgs
    grid = {"lr": [3e-4, 1e-3, 3e-3], "epochs": [5, 10, 20], "beta": [0.05, 0.1, 0.5], "alpha": [0.5, 1.0, 2.0]}

    def validate(self) -> None:
        super().validate()
        check_weights(self)
        problem = idk_answers_problem(self.args.idk_answers)
        self.require(("beta", self.args.beta > 0, "a number > 0 (the DPO inverse temperature)"),
                     ("idk_answers", problem is None, problem or ""))

    def run_language(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        reference = reference_model(self)

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            f, i, r = batch["forget"], batch["idk"], batch["retain"]
            with torch.no_grad():
                ref_i, ref_f = logits_of(reference, i), logits_of(reference, f)
            prefer = idk_dpo_loss(logits_of(m, i), i.y, logits_of(m, f), f.y, ref_i, ref_f, beta=a.beta)
            keep = retain_term(a.retain_loss, logits_of(m, r), r.y, reference_logits(self, r, a.retain_loss))
            return a.gamma * prefer + a.alpha * keep

        plan = paired(self.name, forget, a.idk_answers, seed, a.batch_size, retain=retain)
        return self.fit_language(model, plan, loss_fn, seed)
