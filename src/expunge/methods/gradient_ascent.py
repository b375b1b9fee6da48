"""Gradient ascent (GA, a.k.a. NegGrad): maximise the training loss on the forget set only.

Paper: Thudi et al., "Unrolling SGD: Understanding Factors Influencing Machine Unlearning", EuroS&P 2022; the GA
baseline of Jia et al., NeurIPS 2023. Reference: https://github.com/OPTML-Group/Unlearn-Sparse (``unlearn/GA.py``).
Needs: the forget set with labels only (no retain data); classification and regression.
Defaults, from the reference: 5 epochs and lr 1e-4 (its README's GA command for 10% random forgetting on
CIFAR-10, ``--unlearn_epochs 5 --unlearn_lr 0.0001``); SGD (``unlearn/impl.py``) with momentum 0.9
(``--momentum``), weight decay 5e-4 (``--weight_decay``) and batch size 256 (``--batch_size``), the
``arg_parser.py`` defaults that command keeps; constant learning rate. The papers search lr over [1e-5, 1e-1], so
the grid spans it. GA diverges easily: a non-finite loss stops the run with an
error instead of returning a broken model.
Grid: lr in {1e-5, 1e-4, 1e-3, 1e-2, 1e-1}, epochs in {1, 3, 5}.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import task_of
from ..training import batches, fit
from ._common import supervised_on
from .base import Method, Needs, TrainArgs, register


@dataclass
class GradientAscentArgs(TrainArgs):
    epochs: int = 5
    lr: float = 1e-4
    batch_size: int = 256


@register
class GradientAscent(Method):
    name = "gradient_ascent"
    summary = "Ascend the loss on the forget set (NegGrad)."
    paper = "Thudi et al., Unrolling SGD, EuroS&P 2022"
    reference = "https://github.com/OPTML-Group/Unlearn-Sparse"
    needs = Needs(retain=False, labels=True, forget_labels=True)
    Args = GradientAscentArgs
    grid = {"lr": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1], "epochs": [1, 3, 5]}

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        task = task_of(forget)
        return fit(model, batches(forget, a.batch_size, name="forget"), recipe=a.recipe(), task=task, seed=seed,
                   name=self.name, loss_fn=supervised_on("forget", task, sign=-1.0), step_hooks=self.step_hooks())
