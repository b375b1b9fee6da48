"""Random labels (RL): relabel the forget set with wrong classes and train on it together with the retain set.

Paper: Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020 (as the RL baseline), and Jia et al.,
NeurIPS 2023. Reference: https://github.com/OPTML-Group/Unlearn-Saliency (``unlearn/RL.py``), which, for CIFAR-100
and TinyImageNet, trains on the shuffled union of the relabelled forget set and the retain set, as here (for
CIFAR-10 and SVHN it takes one pass over the relabelled forget set, then one over the retain set, each epoch).
Deviation, on purpose: the reference draws labels uniformly from all classes, so some forget examples keep their
true label; here each new label is drawn uniformly from the *other* classes, once, under the seed.
Needs: forget and retain data with labels; classification only.
Defaults: 10 epochs, SGD lr 0.01 (OPTML). Grid: lr in {0.001, 0.005, 0.01, 0.05}, epochs in {5, 10}.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import targets
from ..training import batches, fit
from ._common import num_outputs, random_other_labels, relabelled_union
from .base import Method, Needs, TrainArgs, register


@dataclass
class RandomLabelArgs(TrainArgs):
    epochs: int = 10
    lr: float = 0.01


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
        g = torch.Generator().manual_seed(int(seed) + 1)
        new_y = random_other_labels(targets(forget), num_outputs(model, forget), g)
        union = relabelled_union(forget, retain, new_y)
        return fit(model, batches(union, a.batch_size), recipe=a.recipe(), task="classification", seed=seed,
                   name=self.name, step_hooks=self.step_hooks())
