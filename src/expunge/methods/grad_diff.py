"""GradDiff for language models: ascend the forget answers' NLL while descending on the retain set.

Paper: the gradient-difference baseline of Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs", COLM
2024 (after Liu et al., "Continual Learning and Private Unlearning", CoLLAs 2022).
Reference: https://github.com/locuslab/open-unlearning (``src/trainer/unlearn/grad_diff.py``,
``src/trainer/utils.py: compute_kl_divergence``, ``configs/trainer/GradDiff.yaml``).
Needs: forget and retain sets (questions and answers); the frozen original π_ref when ``retain_loss="kl"``.

Loss on a zipped forget/retain batch (the forget set sets the epoch; retain batches are cycled, as
OpenUnlearning's ``anchor: forget``):

    L = −γ·NLL_f + α·R,  R = NLL_r (``retain_loss="nll"``) or KL(π_ref ‖ π_θ) on retain (``"kl"``)

NLL_f, NLL_r: the transformers loss, the mean next-token NLL over every answer token of the batch. KL: at each
position that predicts an answer token of a retain sequence, KL(π_ref(·|prefix) ‖ π_θ(·|prefix)) over the whole
vocabulary, averaged over those positions (:func:`kl_to_reference`; :func:`grad_diff_loss`).

Deviation: OpenUnlearning's KL (``kl_div(..., reduction="batchmean")`` on logits flattened to [B·L, V]) averages
over every position of the padded batch, question and padding included. Here the KL covers the positions the
retain loss covers (those predicting answer tokens): positions after the end of a sequence, whose logits follow pad
tokens, add no terms, and the mean does not shrink or grow with the amount of padding.

Defaults: γ = α = 1 and ``retain_loss="nll"`` (``configs/trainer/GradDiff.yaml``). Training settings as
``grad_ascent`` (OpenUnlearning's TOFU experiment: 10 epochs, one warmup epoch, linear decay, weight decay 0.01;
its lr 1e-5 for 1B-8B pretrained models scaled to 1e-3 for the ~1M-parameter models trained here, batches of 16).
Grid: lr in {1e-4, 3e-4, 1e-3, 3e-3, 1e-2}, epochs in {2, 5, 10}, alpha in {0.5, 1, 2}, retain_loss in {nll, kl}.
Runs through LoRA adapters (``lora={"r": 8}``) need the top of the lr range: on the tiny test task rank-8 adapters
on q/v forget at lr 1e-2 (12 epochs: forget NLL 0.97, retain 0.36) and barely move at 3e-3.

The conformance suite's row (``tests/conformance/test_language_methods.py``) holds settings for its tiny
question/answer task (9 forget facts, one batch per epoch), not these defaults: lr 1e-3, 12 epochs (forget NLL 0.05
-> 0.98, oracle 2.87; retain 0.29, oracle 0.10).
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

RETAIN_LOSSES = ("nll", "kl")


def kl_to_reference(logits: torch.Tensor, reference_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the positions that predict a labelled token of KL(π_ref ‖ π_θ) between the next-token
    distributions (``reference_logits`` give π_ref, ``logits`` π_θ)."""
    from ..lm.losses import IGNORE, shifted

    lg, lb = shifted(logits, labels)
    ref = reference_logits[:, :-1]
    keep = lb != IGNORE
    log_p = F.log_softmax(lg[keep].float(), dim=-1)
    log_q = F.log_softmax(ref[keep].float(), dim=-1)
    kl = (log_q.exp() * (log_q - log_p)).sum(-1)
    return kl.mean() if kl.numel() else lg.sum() * 0.0


def retain_term(kind: str, logits: torch.Tensor, labels: torch.Tensor,
                reference_logits: torch.Tensor | None = None) -> torch.Tensor:
    """R: the retain batch's mean answer-token NLL (``"nll"``) or its KL from the reference (``"kl"``)."""
    from ..lm.losses import lm_loss

    if kind == "nll":
        return lm_loss(logits, labels)
    if kind == "kl":
        if reference_logits is None:
            raise ValueError("retain_loss 'kl' needs the reference model's logits")
        return kl_to_reference(logits, reference_logits, labels)
    raise ValueError(f"retain_loss={kind!r} is not allowed; expected one of {', '.join(RETAIN_LOSSES)}")


def grad_diff_loss(forget_logits: torch.Tensor, forget_labels: torch.Tensor, retain_logits: torch.Tensor,
                   retain_labels: torch.Tensor, *, gamma: float = 1.0, alpha: float = 1.0, retain_loss: str = "nll",
                   retain_reference_logits: torch.Tensor | None = None) -> torch.Tensor:
    """−γ·NLL_f + α·R (see the module docstring)."""
    from ..lm.losses import lm_loss

    return (-gamma * lm_loss(forget_logits, forget_labels)
            + alpha * retain_term(retain_loss, retain_logits, retain_labels, retain_reference_logits))


def reference_model(method: LanguageMethod) -> nn.Module:
    """The frozen original π_ref (``LanguageMethod.frozen_original``)."""
    return method.frozen_original()


def reference_logits(method: LanguageMethod, part, kind: str) -> torch.Tensor | None:
    """π_ref's logits on a batch's retain part when the retain term is the KL, else None."""
    if kind != "kl":
        return None
    with torch.no_grad():
        return logits_of(reference_model(method), part)


@dataclass
class GradDiffArgs(LanguageArgs):
    epochs: int = 10
    schedule: str = "linear"
    warmup: float = 0.1
    gamma: float = 1.0
    alpha: float = 1.0
    retain_loss: str = "nll"


def check_weights(method: LanguageMethod, forget_weight: str = "gamma") -> None:
    """Check the forget term's weight (argument ``forget_weight``), the retain weight ``alpha`` and
    ``retain_loss``, shared by grad_diff, npo and simnpo; a KL retain term makes the method read π_ref."""
    a = method.args
    method.require((forget_weight, getattr(a, forget_weight) > 0, "a number > 0 (the forget term's weight)"),
                   ("alpha", a.alpha >= 0, "a number >= 0 (the retain term's weight)"),
                   ("retain_loss", a.retain_loss in RETAIN_LOSSES, f"one of {', '.join(RETAIN_LOSSES)}"))
    method.needs_reference = type(method).needs_reference or a.retain_loss == "kl"


@register
class GradDiff(LanguageMethod):
    name = "grad_diff"
    summary = "Ascend the forget answers' NLL, descend on retain (NLL or KL to the original)."
    paper = "Maini et al., TOFU: A Task of Fictitious Unlearning for LLMs, COLM 2024 (GradDiff baseline)"
    reference = "https://github.com/locuslab/open-unlearning"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    Args = GradDiffArgs
    grid = {"lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "epochs": [2, 5, 10], "alpha": [0.5, 1.0, 2.0],
            "retain_loss": ["nll", "kl"]}

    def validate(self) -> None:
        super().validate()
        check_weights(self)

    def run_language(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            f, r = batch["forget"], batch["retain"]
            return grad_diff_loss(logits_of(m, f), f.y, logits_of(m, r), r.y, gamma=a.gamma, alpha=a.alpha,
                                  retain_loss=a.retain_loss,
                                  retain_reference_logits=reference_logits(self, r, a.retain_loss))

        plan = zipped(("forget", forget, a.batch_size), ("retain", retain, a.batch_size))
        return self.fit_language(model, plan, loss_fn, seed)
