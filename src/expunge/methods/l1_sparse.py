"""ℓ1-sparse unlearning: fine-tune on the retain set with an ℓ1 penalty on the weights whose weight decays to 0.

Paper: Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023.
Reference: https://github.com/OPTML-Group/Unlearn-Sparse (``unlearn/FT.py``, ``FT_l1``; run as ``FT_prune``).

Loss on retain batches: CE(θ; R) + α_t·‖θ‖₁ over every trainable parameter (biases included, as in the
reference), with α_t = α·(1 − t) where t in [0, 1) is the fraction of the run done: the penalty starts at α and
decays linearly to 0, so the sparsity it promotes early is followed by plain fine-tuning at the end.
Needs: retain data with labels (the forget set is never read); classification.

Defaults: 10 epochs, lr 0.01, α = 1e-4: the settings of the reference's scripts (``--alpha 1e-4 --unlearn_lr 0.01
--unlearn_epochs 10``); SGD (``unlearn/impl.py``) with momentum 0.9 (``--momentum``), weight decay 5e-4
(``--weight_decay``) and batch size 256 (``--batch_size``), the ``arg_parser.py`` defaults those scripts keep;
constant learning rate (the MultiStepLR milestones ``--decreasing_lr 91,136`` are never reached in 10 epochs). The
reference's argparse default α = 0.2 makes the penalty dwarf the loss and destroys the model; it is not used.
Grid: alpha in {1e-5, 5e-5, 1e-4, 5e-4}, lr in {0.005, 0.01, 0.05}, epochs in {5, 10}.

Deviation from the reference: the reference updates α once per epoch, α·(1 − e/E) for epoch e, so the last epoch
still carries α/E; here α_t is updated every step and reaches 0 at the end of the run, as the paper describes.
The paper's other proposal, prune first, then unlearn, is :func:`expunge.sparsify` (a sparse original built
once by one-shot magnitude pruning and masked retraining); run ``l1_sparse`` on that original at will, and its
zeros stay zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..training import Batch, StepContext, batches, fit, task_loss
from .base import Method, Needs, TrainArgs, register


@dataclass
class L1SparseArgs(TrainArgs):
    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 256
    alpha: float = 1e-4


def l1_coefficient(alpha: float, progress: float) -> float:
    """The ℓ1 weight α_t at ``progress`` (fraction of the run done, in [0, 1]): linear from α down to 0."""
    return alpha * max(0.0, 1.0 - progress)


def l1_norm(model: nn.Module) -> torch.Tensor:
    """‖θ‖₁ over every trainable parameter."""
    return sum(p.abs().sum() for p in model.parameters() if p.requires_grad)


@register
class L1Sparse(Method):
    name = "l1_sparse"
    summary = "Fine-tune on the retain set with an ℓ1 penalty on the weights that decays linearly to 0."
    paper = "Jia et al., Model Sparsity Can Simplify Machine Unlearning, NeurIPS 2023"
    reference = "https://github.com/OPTML-Group/Unlearn-Sparse"
    needs = Needs(retain=True, labels=True, forget_labels=False)
    tasks = ("classification",)
    Args = L1SparseArgs
    grid = {"alpha": [1e-5, 5e-5, 1e-4, 5e-4], "lr": [0.005, 0.01, 0.05], "epochs": [5, 10]}

    def validate(self) -> None:
        super().validate()
        self.require(("alpha", self.args.alpha >= 0, "a number >= 0"))

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        ce = task_loss("cross_entropy", "classification")

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            r = batch["retain"]
            return ce(m(r.x), r.y) + l1_coefficient(a.alpha, ctx.progress) * l1_norm(m)

        return fit(model, batches(retain, a.batch_size, name="retain"), recipe=a.recipe(), task="classification",
                   seed=seed, name=self.name, loss_fn=loss_fn, step_hooks=self.step_hooks())
