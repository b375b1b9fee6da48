"""UNDIAL: self-distillation toward the original's next-token distribution with the true token's logit lowered.

Paper: Dong et al., "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large Language
Models", NAACL 2025 (arXiv 2402.10052).
Reference: https://github.com/locuslab/open-unlearning (``src/trainer/unlearn/undial.py``, ``src/trainer/utils.py:
compute_undial_loss``, ``configs/trainer/UNDIAL.yaml``, ``community/methods/UNDIAL/``).
Needs: forget text with its labels and the frozen original π_ref; the retain set only when ``alpha > 0``.

Loss: at every position t that predicts a labelled token y_t of a forget sequence (the answer tokens of a question,
every token of a document), the student π_θ is trained toward the original's distribution with y_t's logit lowered
by β:

    L = mean_t CE(softmax(z_ref,t − β·onehot(y_t)), π_θ(·|x_<t)) + α·NLL_r
      = mean_t [−Σ_v q_t(v) log π_θ(v|x_<t)],   q_t = softmax(z_ref,t − β·onehot(y_t))

the mean over every labelled forget token of the batch (:func:`undial_loss`); NLL_r is the retain batch's mean
answer-token NLL.

Defaults: β = 10 and α = 0 (``configs/trainer/UNDIAL.yaml``; the paper uses no retain set, as the community page
says), 10 epochs (the same file) with OpenUnlearning's TOFU schedule (``configs/experiment/unlearn/tofu/
default.yaml``: one warmup epoch, HF's linear decay, weight decay 0.01). The paper tunes Llama-2-7B with LoRA at lr
1e-4; here lr 1e-3 for the ~1M-parameter models trained from scratch (``LanguageArgs``), 10% warmup then linear
decay, batches of 16, as ``grad_diff``.
Grid: lr in {3e-4, 1e-3, 3e-3} (the community script's {1e-5, 1e-4, 3e-4} scaled to these models), beta in
{3, 10, 30} (its betas), epochs in {5, 10, 20}, alpha in {0, 1, 2}.
Tiny conformance task (24 people x 3 facts, 9 forget rows, one step per epoch): ``lr=3e-3, alpha=1`` (settings for
that task, not the defaults). With the paper's α = 0 the run trades retain answers for forget answers on that task
(its questions share templates): at lr 3e-3, 5 epochs reach the forget bar with little to spare, 6 exceed the
retain tolerance.

Deviations from OpenUnlearning's code, following the paper's intent (adjusted targets on the tokens to forget):
its ``compute_undial_loss`` averages the cross-entropy over every position of the padded batch, question and
padding included, where the target is the teacher's distribution; and the -100 label of those positions indexes
the logit V − 100 when the one-hot mask is built, lowering an unrelated token's logit there. Here only positions
that predict a labelled token enter, and only their true token is lowered. With α = 0 OpenUnlearning still
computes the retain term; here the retain set is then not read.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..lm.losses import IGNORE, lm_loss, shifted
from ..training import Batch, StepContext, batches, zipped
from ._language import LanguageArgs, LanguageMethod, logits_of
from .base import Needs, register
from .grad_diff import reference_model


def adjusted_targets(reference_logits: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """``[B, L-1, V]`` target distributions softmax(z_ref − β·onehot(y)) at the positions that predict a labelled
    token (the teacher's distribution unchanged at the others)."""
    ref, lb = shifted(reference_logits, labels)
    ref = ref.float()
    keep = lb != IGNORE
    lowered = F.one_hot(lb.clamp_min(0), ref.shape[-1]).to(ref.dtype) * keep.unsqueeze(-1).to(ref.dtype)
    return F.softmax(ref - beta * lowered, dim=-1)


def undial_loss(logits: torch.Tensor, labels: torch.Tensor, reference_logits: torch.Tensor, *,
                beta: float = 10.0) -> torch.Tensor:
    """Mean over the positions that predict a labelled token of the cross-entropy from the adjusted teacher
    distribution softmax(z_ref − β·onehot(y)) to the student's next-token distribution."""
    lg, lb = shifted(logits, labels)
    keep = lb != IGNORE
    with torch.no_grad():
        target = adjusted_targets(reference_logits, labels, beta)
    ce = -(target * F.log_softmax(lg.float(), dim=-1)).sum(-1)
    return ce[keep].mean() if bool(keep.any()) else lg.sum() * 0.0


@dataclass
class UndialArgs(LanguageArgs):
    epochs: int = 10
    schedule: str = "linear"
    warmup: float = 0.1
    beta: float = 10.0
    alpha: float = 0.0


@register
class Undial(LanguageMethod):
    name = "undial"
    summary = "Self-distil toward the original with the true token's logit lowered by beta (forget data only)."
    paper = ("Dong et al., UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large Language "
             "Models, NAACL 2025")
    reference = "https://github.com/locuslab/open-unlearning"
    needs = Needs(retain=False, labels=True, forget_labels=True)
    needs_reference = True
    Args = UndialArgs
    grid = {"lr": [3e-4, 1e-3, 3e-3], "beta": [3.0, 10.0, 30.0], "epochs": [5, 10, 20], "alpha": [0.0, 1.0, 2.0]}

    def validate(self) -> None:
        super().validate()
        self.require(("beta", self.args.beta >= 0, "a number >= 0 (how far the true token's logit is lowered)"),
                     ("alpha", self.args.alpha >= 0, "a number >= 0 (the retain term's weight; 0: no retain set)"))
        if self.args.alpha > 0:      # a retain term: the request must then carry retain data (checked before work)
            self.needs = Needs(retain=True, labels=True, forget_labels=True)

    def run_language(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        use_retain = a.alpha > 0
        reference = reference_model(self)

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            f = batch["forget"]
            with torch.no_grad():
                ref = logits_of(reference, f)
            loss = undial_loss(logits_of(m, f), f.y, ref, beta=a.beta)
            if use_retain:
                r = batch["retain"]
                loss = loss + a.alpha * lm_loss(logits_of(m, r), r.y)
            return loss

        plan = (zipped(("forget", forget, a.batch_size), ("retain", retain, a.batch_size)) if use_retain
                else batches(forget, a.batch_size, name="forget"))
        return self.fit_language(model, plan, loss_fn, seed)
