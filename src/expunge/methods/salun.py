"""SalUn: saliency-masked random-label unlearning.

Paper: Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image
Classification and Generation", ICLR 2024.
Reference: https://github.com/OPTML-Group/Unlearn-Saliency (``Classification/generate_mask.py``, ``unlearn/RL.py``).

1. Saliency: g = |∇θ CE(θ0; F)|, the gradient of the forget loss at the original weights, for every parameter.
   All weights are ranked together (globally, not per layer) and the top ``ratio`` fraction forms the mask.
2. Random-label unlearning with the mask: the forget set is relabelled with random *other* classes, redrawn
   every epoch, and the model is trained on the shuffled union of the relabelled forget set and the retain set
   (exactly as ``random_label`` does), where only masked weights may change.

The mask is enforced on the weights, not only on the gradients: the gradient of every frozen weight is zeroed and,
after each optimiser step, every frozen weight is restored to θ0 (``training.pin_weights``). Masking only the
gradient, as the released code did when the paper was written (issue #32 of the reference), lets weight decay and
momentum keep moving the "frozen" weights; the paper's numbers were produced with that buggy code, so results here
can differ from the published ones.

Random labels are redrawn every epoch, as the reference's ``RL`` does (it draws new labels for the whole forget
set each epoch on its CIFAR-100/TinyImageNet path, and for every forget batch on its CIFAR-10/SVHN path, which,
with one pass over the forget set per epoch, also gives each forget example a new label every epoch); epoch
``e``'s labels come from a generator seeded with ``expunge.seeds.derive(seed, RANDOM_LABELS, e)``.

Needs: forget and retain data with labels; classification only.
Defaults: the reference README's example for 10% random forgetting (ResNet-18, CIFAR-10): 10 epochs
(``--unlearn_epochs 10``), lr 0.013 (``--unlearn_lr 0.013``), ratio 0.5 (``--mask_path mask/with_0.5.pt``); the
rest from ``Classification/arg_parser.py``, which that command does not override: batch size 256
(``--batch_size``), SGD (``unlearn/impl.py``) with momentum 0.9 (``--momentum``) and weight decay 5e-4
(``--weight_decay``), constant learning rate (the MultiStepLR milestones ``--decreasing_lr 91,136`` are never
reached in 10 epochs). Grid: ratio in {0.1, 0.3, 0.5, 0.7}, lr in {0.005, 0.01, 0.013, 0.05}, epochs in {5, 10}.

Other deviations from the reference: (a) the reference draws random labels from all classes, so some forget
examples keep their true label; here each new label is another class. (b) For CIFAR-10 and SVHN (the README's
setting) the reference's ``RL`` takes, each epoch, one pass over the relabelled forget set and then one over the
retain set; for CIFAR-100 and TinyImageNet it trains on the shuffled union, as here for every dataset. (c) The
reference's mask script sums the
gradients of per-batch mean losses, so an example in a short last batch weighs more (its first releases, until
December 2023, also took an SGD step after every batch, so later batches were scored at moved weights); here the
gradient of the summed loss is taken at θ0 exactly, in eval mode, with no step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..training import fit, mask_gradients, pin_weights
from ._common import ce_gradient, num_outputs, random_label_plan, snapshot
from .base import Method, Needs, TrainArgs, register


@dataclass
class SalUnArgs(TrainArgs):
    epochs: int = 10
    lr: float = 0.013
    batch_size: int = 256
    ratio: float = 0.5


def top_fraction_mask(scores: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """Boolean masks selecting the ``ratio`` fraction of entries with the largest score, ranked over all tensors
    together; ties are broken by position, so the mask holds exactly round(ratio · total) entries."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = int(round(ratio * flat.numel()))
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.argsort(flat, descending=True, stable=True)[:k]] = True
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = keep[start:start + s.numel()].reshape(s.shape)
        start += s.numel()
    return masks


def saliency_mask(model: nn.Module, forget: Dataset, ratio: float) -> dict[str, torch.Tensor]:
    """SalUn's weight-saliency mask: the top ``ratio`` of all weights by |∇θ CE(θ; F)|."""
    return top_fraction_mask({n: g.abs() for n, g in ce_gradient(model, forget).items()}, ratio)


@register
class SalUn(Method):
    name = "salun"
    summary = "Random-label unlearning restricted to the weights most salient for the forget loss."
    paper = ("Fan et al., SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image "
             "Classification and Generation, ICLR 2024")
    reference = "https://github.com/OPTML-Group/Unlearn-Saliency"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    tasks = ("classification",)
    Args = SalUnArgs
    grid = {"ratio": [0.1, 0.3, 0.5, 0.7], "lr": [0.005, 0.01, 0.013, 0.05], "epochs": [5, 10]}

    def validate(self) -> None:
        super().validate()
        self.require(("ratio", 0 < self.args.ratio <= 1, "a fraction in (0, 1]"))

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        masks = saliency_mask(model, forget, a.ratio)
        anchor = snapshot(model)
        plan = random_label_plan(forget, retain, a.batch_size, num_outputs(model, forget), seed)
        scale = {n: m.to(anchor[n].dtype) for n, m in masks.items()}
        return fit(model, plan, recipe=a.recipe(), task="classification", seed=seed,
                   name=self.name, grad_hooks=[mask_gradients(scale)],
                   step_hooks=[pin_weights(masks, anchor), *self.step_hooks()])
