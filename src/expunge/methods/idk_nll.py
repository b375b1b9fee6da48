"""IdkNLL: teach the model to answer the forget questions with "I don't know", keeping the retain answers.

Paper: Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs", COLM 2024 (the "I don't know" / ``idk``
baseline). Reference: https://github.com/locuslab/tofu, ``dataloader.py`` (``CustomTrainerForgetting.compute_loss``,
``loss_type == "idk"``) and ``data_module.py`` (``TextForgetDatasetQA``: a random line of ``data/idontknow.jsonl`` as
the answer of each forget question). OpenUnlearning does not ship it.
Needs: forget questions (their answers are not read) and the retain set with its answers; no reference model.

Loss, on a batch of forget questions each paired with a refusal y_idk and a retain batch of the same size:

    L = Σ_tokens NLL(idk batch ∪ retain batch) / #tokens(idk batch ∪ retain batch)

the mean next-token NLL over every labelled token of the two batches together: TOFU concatenates them into one
batch and takes the transformers loss, so the two terms are weighted by their token counts, not 1:1 (function
:func:`idk_nll_loss`). The refusals default to :data:`expunge.data.authors.IDK_ANSWERS` (``idk_answers=``
replaces them); as in TOFU, each forget question gets a refusal drawn afresh every time it is read (once per epoch),
here under ``expunge.seeds.derive(seed, "idk-answers", epoch)``.

Defaults: TOFU's ``config/forget.yaml`` and ``forget.py`` train 5 epochs at lr 1e-5 (AdamW, weight decay 0.01, one
epoch of warmup, then HF's linear decay) on a 7B model; here the same schedule (5 epochs, 20% warmup, linear decay)
at lr 1e-3 for the ~1M-parameter models trained from scratch (``LanguageArgs``), batches of 16 forget and 16
retain rows, gradient clipping at norm 1.
Grid: lr in {3e-4, 1e-3, 3e-3}, epochs in {5, 10, 20}.
Tiny conformance task (24 people x 3 facts, 9 forget rows, one step per epoch): ``lr=1e-2, epochs=30,
batch_size=32`` (32 retain rows a step; settings for that task, not the defaults).

Deviations: none in the loss. TOFU's uniform random draw of each refusal is seeded here (above), and the batches
keep its pairing of forget and retain batches of equal size (the retain set cycled, reshuffled on each pass).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..lm.losses import answer_nll
from ..training import Batch, StepContext
from ._idk import idk_answers_problem, paired
from ._language import LanguageArgs, LanguageMethod
from .base import Needs, register


def idk_nll_loss(idk_logits: torch.Tensor, idk_labels: torch.Tensor, retain_logits: torch.Tensor,
                 retain_labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL over every labelled token of the refusal batch and the retain batch taken together."""
    idk_sum, idk_n = answer_nll(idk_logits, idk_labels)
    retain_sum, retain_n = answer_nll(retain_logits, retain_labels)
    return (idk_sum.sum() + retain_sum.sum()) / (idk_n.sum() + retain_n.sum()).clamp_min(1)


@dataclass
class IdkNLLArgs(LanguageArgs):
    epochs: int = 5
    schedule: str = "linear"
    warmup: float = 0.2
    idk_answers: list[str] | None = None


@register
class IdkNLL(LanguageMethod):
    name = "idk_nll"
    summary = "Fine-tune forget questions toward \"I don't know\" answers together with the retain answers."
    paper = "Maini et al., TOFU: A Task of Fictitious Unlearning for LLMs, COLM 2024"
    reference = "https://github.com/locuslab/tofu"
    needs = Needs(retain=True, labels=True, forget_labels=False)
    Args = IdkNLLArgs
    grid = {"lr": [3e-4, 1e-3, 3e-3], "epochs": [5, 10, 20]}

    def validate(self) -> None:
        super().validate()
        problem = idk_answers_problem(self.args.idk_answers)
        self.require(("idk_answers", problem is None, problem or ""))

    def run_language(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            i, r = batch["idk"], batch["retain"]
            return idk_nll_loss(m(i.x), i.y, m(r.x), r.y)

        plan = paired(self.name, forget, a.idk_answers, seed, a.batch_size, retain=retain)
        return self.fit_language(model, plan, loss_fn, seed)
