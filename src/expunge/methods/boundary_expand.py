"""Boundary Expanding: add a shadow class, fine-tune the forget set into it, then prune the shadow neuron.

Paper: Chen et al., "Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the Decision Space",
CVPR 2023. Reference: the authors' code, released only as a zip archive linked from the paper page
(``boundary_expanding``); port in https://github.com/OPTML-Group/Unlearn-Saliency
(``Classification/unlearn/boundary_ex.py``).

1. Widen the final linear layer by one output, the *shadow class*: the original rows are copied, the shadow row is
   freshly initialised (PyTorch's default ``nn.Linear`` initialisation, under the seed).
2. Fine-tune the whole widened model on the forget set alone with every forget example labelled as the shadow
   class: the forget examples' activations move into a region no real class owns.
3. Remove the shadow neuron: the final layer gets back its original rows, so the returned model has exactly the
   original outputs, architecture and ``state_dict`` keys (the layer module itself is the original object).

The final layer is the model's last layer, the ``nn.Linear`` whose output is the model's output, found by a forward
pass on one forget example (the ``head`` of every built-in model; any name in other models); a model whose output
is not an ``nn.Linear``'s is refused.

Trap in the port: SalUn's ``boundary_ex.py`` widens the layer and never removes the shadow neuron, so the model it
returns has one output too many and can still predict the shadow class; the paper's step 3 (and the authors'
code, which builds a pruned classifier) removes it. Here it is always removed.

Needs: forget data, features only (every forget label is replaced by the shadow class, so no label is read); the
retain set is never read; classification.
Defaults: the authors' code: SGD lr 1e-5, momentum 0.9, no weight decay, 10 epochs over the forget set
(``boundary_expanding``), batch size 64 (its ``main.py --batch_size``, which sizes the forget loader; the OPTML
port uses its own 256). As for ``boundary_shrink``, that lr is for a CIFAR-10 All-CNN and barely moves a
small model; tune it. Grid: lr in {1e-5, 1e-4, 1e-3, 5e-3, 1e-2, 0.05}, epochs in {5, 10}.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..training import Batch, StepContext, batches, fit, pin_weights
from ._embedding import final_linear_of, probe_of
from ..devices import model_device, move
from .base import Method, Needs, TrainArgs, output_size, register


@dataclass
class BoundaryExpandArgs(TrainArgs):
    epochs: int = 10
    lr: float = 1e-5
    weight_decay: float = 0.0


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def widened(layer: nn.Linear, seed: int) -> nn.Linear:
    """A copy of ``layer`` with one more output: the original rows copied, the new (last) row freshly initialised
    under ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))      # drawn on the CPU, then moved: the same row on every device
        wide = nn.Linear(layer.in_features, layer.out_features + 1, bias=layer.bias is not None,
                         dtype=layer.weight.dtype, device="cpu").to(layer.weight.device)
    with torch.no_grad():
        wide.weight[:-1] = layer.weight
        if layer.bias is not None:
            wide.bias[:-1] = layer.bias
    return wide


def shrink_into(wide: nn.Linear, layer: nn.Linear) -> nn.Linear:
    """Copy all but the last (shadow) row of ``wide`` into ``layer``; return ``layer``."""
    with torch.no_grad():
        layer.weight.copy_(wide.weight[:-1])
        if layer.bias is not None:
            layer.bias.copy_(wide.bias[:-1])
    return layer


@register
class BoundaryExpand(Method):
    name = "boundary_expand"
    summary = "Fine-tune the forget set into an added shadow class, then remove the shadow neuron."
    paper = ("Chen et al., Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the Decision Space, "
             "CVPR 2023")
    reference = "https://github.com/OPTML-Group/Unlearn-Saliency (port; the authors' code is a zip archive)"
    needs = Needs(retain=False, labels=False, forget_labels=False)
    tasks = ("classification",)
    Args = BoundaryExpandArgs
    grid = {"lr": [1e-5, 1e-4, 1e-3, 5e-3, 1e-2, 0.05], "epochs": [5, 10]}

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        probe = move(probe_of(forget), model_device(model))
        name, layer = final_linear_of(model, probe, method=self.name)
        k = output_size(model, probe)
        wide = widened(layer, seed)
        net = wide if name == "" else model
        if name:
            _set_submodule(model, name, wide)
        if layer.out_features != k or output_size(net, probe) != k + 1:
            raise ValueError(f"the final linear layer found ({name or 'the model'}: {layer.out_features} outputs) "
                             f"does not produce the model's {k} outputs")

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            out = m(batch["forget"].x)
            return F.cross_entropy(out, torch.full((len(out),), k, dtype=torch.long, device=out.device))

        fit(net, batches(forget, a.batch_size, name="forget"), recipe=a.recipe(), task="classification", seed=seed,
            name=self.name, loss_fn=loss_fn, step_hooks=self._wide_pins(name))
        shrink_into(wide, layer)
        if name:
            _set_submodule(model, name, layer)
        return model

    def _wide_pins(self, name: str) -> list:
        """Hooks keeping masked weights at zero while the final layer is widened (the shadow row is never masked)."""
        masks = dict(self.weight_masks())
        if not masks:
            return []
        prefix = f"{name}." if name else ""
        for key in (f"{prefix}weight", f"{prefix}bias"):
            if key in masks:
                masks[key] = torch.cat([masks[key], torch.ones_like(masks[key][:1])])
        return [pin_weights(masks, {k: torch.zeros_like(m) for k, m in masks.items()})]
