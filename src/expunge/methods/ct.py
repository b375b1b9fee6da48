"""CT, Convolution Transpose: transpose every convolution kernel, then fine-tune on the retain set.

Paper: the fifth-place solution of the NeurIPS 2023 Machine Unlearning Challenge (Kaggle), as re-implemented and
named in Cadet et al., "Deep Unlearn: Benchmarking Machine Unlearning for Image Classification", arXiv:2410.01276,
2024, which finds it among the most consistent methods.
Reference: https://github.com/xcadet/deepunlearn (``munl/unlearning/kgltop5.py``).

1. Every ``nn.Conv2d`` kernel W[out, in, h, w] is replaced by its spatial transpose W[out, in, w, h]: the
   learned filters keep their weights but lose their orientation, which damages what the network has memorised
   while leaving channel statistics (and batch-norm layers) intact.
2. Fine-tune the whole model on R with cross-entropy, the learning rate following a cosine decay.

The method genuinely needs 2-D convolutions: a model without an ``nn.Conv2d`` (e.g. an MLP) is refused with a
ValueError, and so is a non-square kernel (its transpose would change the layer's shape); other layers are left
as they are. The class declares ``requires_conv = True``.

Needs: retain data with labels (the forget set is never read); classification.
Defaults: the reference's constants in ``kgltop5.py`` (``KGLTop5.ORIGINAL_NUM_EPOCHS`` 3, ``ORIGINAL_LR`` 1e-3,
``ORIGINAL_MOMENTUM`` 0.9, ``ORIGINAL_WEIGHT_DECAY`` 5e-4, ``ORIGINAL_BATCH_SIZE`` 64), SGD with a cosine schedule
(its ``CosineAnnealingLR(optimizer, T_max=epochs)``).
Grid (DeepUnlearn tunes lr log-uniformly in [1e-5, 1e-1], epochs, batch size and weight decay):
lr in {1e-4, 1e-3, 1e-2, 0.05}, epochs in {1, 3, 5, 10}.

Deviations from the reference: (a) the reference replaces each kernel by a new, non-contiguous parameter; here
the kernel is transposed in place, so the parameter objects and ``state_dict`` keys are unchanged. (b) The
reference's cosine schedule changes the learning rate once per epoch; here it changes every step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..training import batches, fit
from .base import Method, Needs, TrainArgs, register


@dataclass
class CTArgs(TrainArgs):
    epochs: int = 3
    lr: float = 1e-3
    schedule: str = "cosine"


def conv2d_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    """Every ``nn.Conv2d`` by name; ValueError when there is none or a kernel is not square."""
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    if not convs:
        raise ValueError(f"method 'ct' transposes 2-D convolution kernels, and the model ({type(model).__name__}) "
                         "has no nn.Conv2d layer; use a convolutional model or another method")
    for n, m in convs.items():
        if m.kernel_size[0] != m.kernel_size[1]:
            raise ValueError(f"method 'ct': layer {n or type(model).__name__} has a non-square kernel "
                             f"{tuple(m.kernel_size)}; transposing it would change the layer's shape")
    return convs


def transpose_kernels(model: nn.Module) -> list[str]:
    """Swap the two spatial axes of every ``nn.Conv2d`` kernel in place; return the layers' names."""
    convs = conv2d_layers(model)
    with torch.no_grad():
        for m in convs.values():
            m.weight.copy_(m.weight.transpose(2, 3).clone())
    return list(convs)


@register
class CT(Method):
    name = "ct"
    summary = "Transpose every convolution kernel, then fine-tune on the retain set."
    paper = ("NeurIPS 2023 Machine Unlearning Challenge, 5th place (CT), as in Cadet et al., Deep Unlearn: "
             "Benchmarking Machine Unlearning for Image Classification, arXiv:2410.01276, 2024")
    reference = "https://github.com/xcadet/deepunlearn"
    needs = Needs(retain=True, labels=True, forget_labels=False)
    tasks = ("classification",)
    requires_conv = True
    Args = CTArgs
    grid = {"lr": [1e-4, 1e-3, 1e-2, 0.05], "epochs": [1, 3, 5, 10]}

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        masks = self.weight_masks()
        for n in transpose_kernels(model):
            key = f"{n}.weight" if n else "weight"
            if key in masks:   # a masked kernel keeps its zeros where its weights went (same dict unlearn applies)
                masks[key] = masks[key].transpose(2, 3).contiguous()
        return fit(model, batches(retain, a.batch_size), recipe=a.recipe(), task="classification", seed=seed,
                   name=self.name, step_hooks=self.step_hooks())
