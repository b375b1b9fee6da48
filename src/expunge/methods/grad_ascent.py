"""GradAscent for language models: maximise the answer NLL of the forget set.

Paper: the gradient-ascent baseline of Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs", COLM 2024
(after Jang et al., "Knowledge Unlearning for Mitigating Privacy Risks in Language Models", ACL 2023).
Reference: https://github.com/locuslab/open-unlearning (``src/trainer/unlearn/grad_ascent.py``,
``configs/trainer/GradAscent.yaml``, ``configs/experiment/unlearn/tofu/default.yaml``).
Needs: the forget set (questions and answers); no retain data, no reference model.

Loss on a forget batch: −NLL_f, where NLL_f is the transformers causal-LM loss, i.e. the mean next-token NLL over
every answer token of the batch (a token-weighted mean, not a mean of per-sequence means), as OpenUnlearning
takes ``-outputs.loss``. (:func:`grad_ascent_loss`.)

Deviations: none in the loss; the training settings are scaled for small models (below).

Defaults: OpenUnlearning's TOFU experiment trains 10 epochs with one warmup epoch (``warmup_epochs: 1.0``), then
the Hugging Face trainer's linear decay, weight decay 0.01, an effective batch of 32 and lr 1e-5 with AdamW, on
pretrained models of 1B-8B weights. Here: 10 epochs, warmup 0.1 (one epoch of ten), linear decay, weight decay
0.01, AdamW; lr 1e-3 and batches of 16 (``LanguageArgs``): the small models trained from scratch here learn at lr
3e-3 to 1e-2, and at lr 1e-5 ten epochs of GradAscent leave the tiny test task's forget NLL where it was (0.049 ->
0.049 nats per token; 0.08 at 1e-4, 0.94 at 1e-3); forget sets of a few dozen facts give one or two batches of
32. Gradient clipping at norm 1 (``LanguageArgs``) bounds each ascent step; GradAscent has no term that
stops it, so its damage grows with the number of steps and a non-finite loss stops the run with an error.
Grid: lr in {1e-4, 3e-4, 1e-3, 3e-3, 1e-2}, epochs in {2, 5, 10}. (Runs through LoRA adapters need the top of the
lr range: about ten times the full-weight learning rate on the tiny test task.)

The conformance suite's row (``tests/conformance/test_language_methods.py``) holds settings for its tiny
question/answer task (9 forget facts, one batch per epoch), not these defaults: lr 1e-3, 10 epochs (forget NLL 0.05
-> 0.94 nats/token, oracle 2.87; retain 0.51, oracle 0.10).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..training import Batch, StepContext, batches
from ._language import LanguageArgs, LanguageMethod, logits_of
from .base import Needs, register


def grad_ascent_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """−(mean next-token NLL over every labelled token of the batch)."""
    from ..lm.losses import lm_loss

    return -lm_loss(logits, labels)


@dataclass
class GradAscentArgs(LanguageArgs):
    epochs: int = 10
    schedule: str = "linear"
    warmup: float = 0.1


@register
class GradAscent(LanguageMethod):
    name = "grad_ascent"
    summary = "Ascend the answer NLL of the forget set (GradAscent for language models)."
    paper = "Maini et al., TOFU: A Task of Fictitious Unlearning for LLMs, COLM 2024 (GradAscent baseline)"
    reference = "https://github.com/locuslab/open-unlearning"
    needs = Needs(retain=False, labels=True, forget_labels=True)
    Args = GradAscentArgs
    grid = {"lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "epochs": [2, 5, 10]}

    def run_language(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            f = batch["forget"]
            return grad_ascent_loss(logits_of(m, f), f.y)

        plan = batches(forget, self.args.batch_size, name="forget")
        return self.fit_language(model, plan, loss_fn, seed)
