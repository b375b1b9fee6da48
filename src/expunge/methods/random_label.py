"""Random labels (RL): relabel the forget set with wrong classes and train on it together with the retain set.

Paper: Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020 (as the RL baseline), and Jia et al.,
NeurIPS 2023. Reference: https://github.com/OPTML-Group/Unlearn-Saliency (``Classification/unlearn/RL.py``; the
same method as ``unlearn/RL.py`` of https://github.com/OPTML-Group/Unlearn-Sparse). For CIFAR-100 and TinyImageNet
(and for every dataset in Unlearn-Sparse) it trains on the shuffled union of the relabelled forget set and the
retain set, as here; for CIFAR-10 and SVHN it takes one pass over the relabelled forget set, then one over the
retain set, each epoch.

Labels are redrawn every epoch, as the reference does: its ``RL`` is called once per epoch and draws new labels
for the whole forget set each time (``np.random.randint`` on the union path; ``torch.randint`` for every forget
batch on its CIFAR-10 path, which, with one pass over the forget set per epoch, also gives every forget example a
new label each epoch). Here epoch ``e``'s labels come from ``expunge.seeds.derive(seed, RANDOM_LABELS, e)``:
seeded, deterministic and independent of the batch order.
Deviation, on purpose: the reference draws labels uniformly from all classes, so some forget examples keep their
true label; here each new label is drawn uniformly from the *other* classes.
Needs: forget and retain data with labels; classification only.
Defaults, from the reference's ``Classification/arg_parser.py`` (the README's RL runs override none of them):
10 epochs (``--unlearn_epochs``), SGD (``unlearn/impl.py``) lr 0.01 (``--unlearn_lr``), momentum 0.9
(``--momentum``), weight decay 5e-4 (``--weight_decay``), batch size 256 (``--batch_size``), constant learning
rate (``impl.py``'s MultiStepLR milestones ``--decreasing_lr 91,136`` are never reached in 10 epochs).
Grid: lr in {0.001, 0.005, 0.01, 0.05}, epochs in {5, 10}.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torch.utils.data import Dataset

from ..training import fit
from ._common import num_outputs, random_label_plan
from .base import Method, Needs, TrainArgs, register


@dataclass
class RandomLabelArgs(TrainArgs):
    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 256


@register
class RandomLabel(Method):
    name = "random_label"
    summary = "Train on the forget set with random wrong labels plus the retain set."
    paper = "Golatkar et al., Eternal Sunshine of the Spotless Net, CVPR 2020 (RL baseline)"
    reference = "https://github.com/OPTML-Group/Unlearn-Saliency"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    tasks = ("classification",)
    Args = RandomLabelArgs
    grid = {"lr": [0.001, 0.005, 0.01, 0.05], "epochs": [5, 10]}

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        plan = random_label_plan(forget, retain, a.batch_size, num_outputs(model, forget), seed)
        return fit(model, plan, recipe=a.recipe(), task="classification", seed=seed, name=self.name,
                   step_hooks=self.step_hooks())
