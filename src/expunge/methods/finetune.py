"""Fine-tune (FT): keep training the original on the retain set only, relying on catastrophic forgetting.

Paper: Warnecke et al., "Machine Unlearning of Features and Labels", NDSS 2023, and the FT baseline of Jia et al.,
"Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023.
Reference: https://github.com/OPTML-Group/Unlearn-Sparse (``unlearn/FT.py``).
Needs: retain data with labels; works for classification and regression.
Defaults, from the reference: 10 epochs and lr 0.01 (its README's FT command, ``--unlearn_epochs 10
--unlearn_lr 0.01``); SGD (``unlearn/impl.py``) with momentum 0.9 (``--momentum``) and weight decay 5e-4
(``--weight_decay``), batch size 256 (``--batch_size``), all ``arg_parser.py`` defaults; constant learning rate
(``impl.py``'s MultiStepLR milestones ``--decreasing_lr 91,136`` are never reached in 10 epochs).
Grid: lr in {0.001, 0.005, 0.01, 0.05, 0.1}, epochs in {5, 10}.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import task_of
from ..training import batches, fit
from .base import Method, Needs, TrainArgs, register


@dataclass
class FinetuneArgs(TrainArgs):
    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 256


@register
class Finetune(Method):
    name = "finetune"
    summary = "Continue training on the retain set only (catastrophic forgetting)."
    paper = "Warnecke et al., Machine Unlearning of Features and Labels, NDSS 2023"
    reference = "https://github.com/OPTML-Group/Unlearn-Sparse"
    needs = Needs(retain=True, labels=True, forget_labels=False)
    Args = FinetuneArgs
    grid = {"lr": [0.001, 0.005, 0.01, 0.05, 0.1], "epochs": [5, 10]}

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        return fit(model, batches(retain, a.batch_size), recipe=a.recipe(), task=task_of(retain), seed=seed,
                   name=self.name, step_hooks=self.step_hooks())
