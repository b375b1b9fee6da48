"""SCRUB: a student that moves away from the original teacher on the forget set and stays with it on the retain set.

Paper: Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023.
Reference: https://github.com/meghdadk/SCRUB (``train_distill`` in ``distill.py``, driven from the notebooks).

The student starts as a copy of θ0; the teacher is θ0, frozen, in eval mode. With
KL_T(t‖s) = T²·KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch (the reference's ``DistillKL``), each epoch
runs, in order:

- for the first ``msteps`` epochs only, a max-step pass over F: minimise −KL_T(teacher‖student), i.e. push the
  student's forget-set outputs away from the teacher's (forget labels are not read);
- a min-step pass over R: minimise γ·CE + α·KL_T(teacher‖student), i.e. keep the retain behaviour.

The first max-step pass starts with the student equal to the teacher, where the divergence and its gradient
vanish, so it does little unless train mode (batch norm, dropout) or weight decay sets the student apart, as in
the reference; the max steps of later epochs act on what the min steps have changed. Both passes share one
optimiser, as in the reference. They are one plan for the training loop: per epoch the max-step batches (tag
"max") followed by the min-step batches (tag "min"); the loss dispatches on the tag.
Needs: forget data (features only) and retain data with labels; classification only.
Defaults: the paper's large-scale setting: SGD lr 5e-4, momentum 0.9, weight decay 5e-4, 3 epochs, msteps 2, T 4,
γ 0.99, α 0.001, batch 128 on R and 32 on F (the reference's settings live in notebooks, which disagree with each
other and with the paper in places; the paper's values are used). The reference's lr decay milestones (epochs
3, 5, 9, after the epoch) never act within 3 epochs, so the learning rate is constant.
Grid: lr in {5e-4, 1e-3, 5e-3, 1e-2}, msteps in {1, 2, 3}, epochs in {3, 5, 10}, alpha in {0.001, 0.01, 0.1}.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..training import Batch, Plan, StepContext, batches, chain, fit
from ._common import frozen
from .base import Method, Needs, TrainArgs, clone, register


@dataclass
class ScrubArgs(TrainArgs):
    epochs: int = 3
    lr: float = 5e-4
    batch_size: int = 128
    forget_batch_size: int = 32
    msteps: int = 2
    temperature: float = 4.0
    gamma: float = 0.99
    alpha: float = 0.001


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²·KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch."""
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * temperature ** 2


def first_epochs(plan: Plan, n: int) -> Plan:
    """``plan`` during the first ``n`` epochs, nothing afterwards."""
    def limited(epoch: int, g: torch.Generator) -> list[Batch]:
        return list(plan(epoch, g)) if epoch < n else []
    return limited


@register
class Scrub(Method):
    name = "scrub"
    summary = "Student–teacher: diverge from the original on the forget set, match it (and the labels) on retain."
    paper = "Kurmanji et al., Towards Unbounded Machine Unlearning, NeurIPS 2023"
    reference = "https://github.com/meghdadk/SCRUB"
    needs = Needs(retain=True, labels=True, forget_labels=False)
    tasks = ("classification",)
    Args = ScrubArgs
    grid = {"lr": [5e-4, 1e-3, 5e-3, 1e-2], "msteps": [1, 2, 3], "epochs": [3, 5, 10],
            "alpha": [0.001, 0.01, 0.1]}

    def validate(self) -> None:
        super().validate()
        a = self.args
        self.require(("msteps", a.msteps >= 0, "an integer >= 0"), ("temperature", a.temperature > 0, "a number > 0"),
                     ("gamma", a.gamma >= 0, "a number >= 0"), ("alpha", a.alpha >= 0, "a number >= 0"),
                     ("forget_batch_size", a.forget_batch_size >= 1, "an integer >= 1"))

    def plan(self, forget: Dataset, retain: Dataset) -> Plan:
        a = self.args
        max_steps = batches(forget, a.forget_batch_size, name="forget", tag="max")
        min_steps = batches(retain, a.batch_size, name="retain", tag="min")
        return chain(first_epochs(max_steps, a.msteps), min_steps)

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        teacher = frozen(clone(model))

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            if batch.tag == "max":
                x = batch["forget"].x
                return -distill_kl(m(x), teacher(x), a.temperature)
            r = batch["retain"]
            out = m(r.x)
            return a.gamma * F.cross_entropy(out, r.y) + a.alpha * distill_kl(out, teacher(r.x), a.temperature)

        return fit(model, self.plan(forget, retain), recipe=a.recipe(), task="classification", seed=seed,
                   name=self.name, loss_fn=loss_fn, step_hooks=self.step_hooks())
