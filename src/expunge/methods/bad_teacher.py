"""Bad Teacher: distil the original into a student, except on the forget set, where a random network teaches.

Paper: Chundawat et al., "Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks Using an Incompetent
Teacher", AAAI 2023. Reference: https://github.com/vikram2000b/bad-teaching-unlearning (``unlearn.py``,
``blindspot_unlearner`` and ``UnlearnerLoss``; the CIFAR-Super20 notebook for the settings).

Two teachers, both frozen and in eval mode: the *competent* teacher is the original θ0; the *incompetent* teacher
has the original's architecture with fresh random weights, drawn under ``expunge.seeds.derive(seed,
INCOMPETENT_TEACHER_INIT)`` (never under ``seed`` itself, which would rebuild the original's own initial weights;
recorded in the result's ``auxiliary_seeds``). The student starts as a copy of θ0 and trains
on the shuffled union of the forget set and a random ``retain_fraction`` of the retain set. For each example the
target distribution is the incompetent teacher's softmax(logits/T) on forget examples and the competent teacher's
on retain examples; the loss is the distillation divergence KL(teacher mix ‖ student) = Σ p_teacher·log(p_teacher /
p_student), averaged over the batch (the paper writes it as the KL between the teacher mix and the student; both
the paper and the code put the teacher's distribution first).

Needs: forget and retain data, no labels; classification only.
Defaults: the reference notebook's (``CIFARSuper20_Rocket_Unlearn.ipynb``, its ``blindspot_unlearner`` call), which
the SSD paper's port also uses: ``torch.optim.Adam`` at lr 1e-4 (no weight decay), ``epochs = 1``,
``batch_size = 256``, ``KL_temperature = 1``, and 30% of the retain set
(``random.sample(retain_train, int(0.3*len(retain_train)))``). (The reference function's own defaults, 10 epochs at
lr 0.01, are not what its experiments ran.) ``init``: a function building a freshly initialised model, for
architectures whose parameters are not all reset by ``reset_parameters`` (see ``_common.fresh_initialisation``).
Grid: lr in {1e-4, 5e-4, 1e-3, 1e-2}, epochs in {1, 3, 5, 10}, retain_fraction in {0.1, 0.3, 1.0}.

Deviation from the reference: its ``F.kl_div`` uses the default ``'mean'`` reduction, which also divides by the
number of classes; here the divergence is averaged over examples only (``'batchmean'``, the true mean KL). With
Adam the two differ only through Adam's ε; with SGD the learning rate absorbs the factor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import ArrayDataset, features
from ..provenance import stamp
from ..seeds import INCOMPETENT_TEACHER_INIT, derive
from ..training import Batch, StepContext, batches, fit
from ._common import fresh_initialisation, frozen
from .base import Method, Needs, TrainArgs, clone, register


@dataclass
class BadTeacherArgs(TrainArgs):
    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 256
    optimizer: str = "adam"
    weight_decay: float = 0.0
    temperature: float = 1.0
    retain_fraction: float = 0.3
    init: Callable[[], nn.Module] | None = None


def teacher_mix(competent: torch.Tensor, incompetent: torch.Tensor, is_forget: torch.Tensor,
                temperature: float) -> torch.Tensor:
    """Per-example target distribution: the incompetent teacher's on forget rows, the competent one's elsewhere."""
    good = F.softmax(competent / temperature, dim=1)
    bad = F.softmax(incompetent / temperature, dim=1)
    return torch.where(is_forget.unsqueeze(1), bad, good)


def forget_first_union(forget: Dataset, retain: Dataset, fraction: float, generator: torch.Generator
                       ) -> tuple[ArrayDataset, int]:
    """The forget set followed by a random ``fraction`` of the retain set, features only (targets are dummies that
    are never read); positions below the returned count are forget examples."""
    xf, xr = features(forget), features(retain)
    keep = torch.randperm(len(xr), generator=generator, device="cpu")[:max(1, int(round(fraction * len(xr))))]
    x = torch.cat([xf, xr[keep.sort().values]])
    return ArrayDataset(x, torch.zeros(len(x), dtype=torch.long, device="cpu"), task="classification"), len(xf)


@register
class BadTeacher(Method):
    name = "bad_teacher"
    summary = "Distil the original on retain data and a randomly initialised teacher on the forget set."
    paper = ("Chundawat et al., Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks Using an "
             "Incompetent Teacher, AAAI 2023")
    reference = "https://github.com/vikram2000b/bad-teaching-unlearning"
    needs = Needs(retain=True, labels=False, forget_labels=False)
    tasks = ("classification",)
    Args = BadTeacherArgs
    grid = {"lr": [1e-4, 5e-4, 1e-3, 1e-2], "epochs": [1, 3, 5, 10], "retain_fraction": [0.1, 0.3, 1.0]}

    def validate(self) -> None:
        super().validate()
        a = self.args
        self.require(("retain_fraction", 0 < a.retain_fraction <= 1, "a fraction in (0, 1]"),
                     ("temperature", a.temperature > 0, "a number > 0"))

    def unlearn(self, model: nn.Module, *, seed: int = 0, **kwargs) -> nn.Module:
        out = super().unlearn(model, seed=seed, **kwargs)
        stamp(out, auxiliary_seeds={"incompetent_teacher": derive(seed, INCOMPETENT_TEACHER_INIT)})
        return out

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        competent = frozen(clone(model))
        incompetent = frozen(fresh_initialisation(model, derive(seed, INCOMPETENT_TEACHER_INIT), a.init))
        data, n_forget = forget_first_union(forget, retain, a.retain_fraction,
                                            torch.Generator().manual_seed(int(seed) + 1))

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            part = batch["data"]
            x = part.x
            target = teacher_mix(competent(x), incompetent(x), (part.positions < n_forget).to(x.device),
                                 a.temperature)
            log_student = F.log_softmax(m(x) / a.temperature, dim=1)
            return F.kl_div(log_student, target, reduction="batchmean")

        return fit(model, batches(data, a.batch_size), recipe=a.recipe(), task="classification", seed=seed,
                   name=self.name, loss_fn=loss_fn, step_hooks=self.step_hooks())
