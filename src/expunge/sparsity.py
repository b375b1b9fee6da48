"""Sparse originals: the "prune first, then unlearn" protocol.

Paper: Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023.
Reference: https://github.com/OPTML-Group/Unlearn-Sparse (``main_imp.py``, ``pruner/omp.py``, ``pruner/utils.py``;
README: ``main_imp.py --prune_type rewind_lt --rewind_epoch 8 --rate 0.95``).

:func:`sparsify` builds the sparse original once, as the reference does:

1. One-shot magnitude pruning (OMP) of the trained original: the ``sparsity`` fraction of the pruned layers'
   weights with the smallest magnitude, ranked globally over those layers, is set to zero (the reference's
   ``prune.global_unstructured(..., L1Unstructured, amount=0.95)``; exactly ``round(sparsity · n)`` weights, ties
   broken by position).
2. Rewinding: the surviving weights go back to their values at an early epoch of the original's run
   (``rewind``; the reference rewinds to epoch 8 of 182, and ``rewind="auto"`` takes the same fraction of the
   original's epochs, rounded), and the learning-rate schedule resumes from that epoch.
3. Masked retraining on the full training data with the original's recorded recipe, the pruned weights held at
   exactly zero (their gradients zeroed before each step, their values after it).

Which layers: with convolutions, every convolution kernel and nothing else (the reference prunes every
``nn.Conv2d`` of its ResNets and VGGs and never the final ``fc`` layer; biases and normalisation layers are not
pruned). A model without convolutions (an MLP) would have nothing to prune under that rule, so its linear layers
are pruned instead, all but the output layer (``model.head``, else the last ``nn.Linear``), which the reference
never prunes.

The early-epoch weights are not kept by ``expunge.train``, so they are reproduced: the original's run is replayed
from its initial weights (``init=``, by default rebuilt from the original's provenance for models built by
``expunge.model``) with its recipe and seed, which on CPU gives the original's own trajectory bit for bit, and
the mask is switched on at the rewind epoch. ``rewind=None`` skips rewinding: the pruned trained weights are
retrained with the full recipe (the reference's ``--prune_type pt``).

Deviations from the reference: (a) after rewinding, the reference trains for the full epoch count again with the
schedule advanced by the rewind epochs; here the run continues for the remaining epochs, so the sparse original
has seen as many epochs as the dense one. (b) The reference keeps pruned weights at zero with
``torch.nn.utils.prune`` (a weight reparametrised as ``weight_orig * mask``); here the weights themselves are
zero, which saves and loads as an ordinary state dict. Methods whose statistics come from per-sample gradients
(``fisher``, ``influence``, through ``torch.func``) see the gradients of the zero weights too, where the
reference's masked weights have none; their changes there are discarded, but ``fisher``'s per-unit variance
averages and ``influence``'s Fisher include those coordinates.

The mask a sparse model carries: its provenance records the pruned parameters (``provenance(model).sparse``), and
the mask is their zero pattern, so it survives ``copy.deepcopy``, ``save_model``/``load_model`` (the sidecar
carries the record) and unlearning. Every method keeps it: ``Method.unlearn`` zeroes their gradients and pins
their values through training (``training.pin_weights``) and multiplies them back into the result, and ``retrain`` on a sparse original trains
the same sparse architecture (same mask) from a fresh initialisation, the like-for-like oracle: the reference's
``retrain`` on a sparse checkpoint retrains the masked model from scratch (``main_forget.py`` applies the mask and
loads no weights for ``retrain``), so the paper's sparse results are measured against a sparse oracle.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from .data.datasets import features, fingerprint, resolve
from .devices import model_device, move
from .provenance import provenance, stamp
from .training import Batch, Recipe, batches, fit, mask_gradients, pin_weights

REFERENCE_REWIND = (8, 182)   # the reference rewinds to epoch 8 of its 182-epoch CIFAR runs
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def pruned_parameters(model: nn.Module) -> tuple[str, dict[str, nn.Parameter]]:
    """The weights the protocol prunes and a name for them: ``("convolution", ...)`` (every convolution kernel)
    when the model has a convolution, else ``("hidden linear", ...)`` (every ``nn.Linear`` weight but the output
    layer's). ValueError when there is neither."""
    def key(mname: str) -> str:
        return f"{mname}.weight" if mname else "weight"

    convs = {key(n): m.weight for n, m in model.named_modules() if isinstance(m, CONV)}
    if convs:
        return "convolution", convs
    head = getattr(model, "head", None)
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not isinstance(head, nn.Linear) and linears:
        head = linears[-1][1]
    hidden = {key(n): m.weight for n, m in linears if m is not head}
    if not hidden:
        raise ValueError(f"the model ({type(model).__name__}) has no convolution and no linear layer besides its "
                         "output layer, so there is nothing to prune")
    return "hidden linear", hidden


def magnitude_masks(weights: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """Global magnitude pruning: keep-masks (1 kept, 0 pruned, in each weight's dtype) zeroing exactly
    ``round(sparsity · n)`` of the ``n`` weights, those of smallest magnitude over all of them (ties: the earlier
    position first)."""
    flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    k = int(round(sparsity * flat.numel()))
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.argsort(flat, stable=True)[:k]] = False
    out, at = {}, 0
    for name, w in weights.items():
        out[name] = keep[at:at + w.numel()].reshape(w.shape).to(w.dtype)
        at += w.numel()
    return out


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Multiply each named parameter by its mask, in place; return ``model``."""
    if masks:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in masks:
                    p.mul_(masks[name])
    return model


def carried_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The mask a sparse model carries (empty for a dense one): for each parameter its provenance names as
    pruned, 1 where the weight is non-zero and 0 where it is zero."""
    record = provenance(model).sparse
    if not record:
        return {}
    params = dict(model.named_parameters())
    names = list(record.get("parameters") or [])
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"the model's sparsity record names parameter {missing[0]!r}, which the model does not "
                         "have; it does not belong to this model")
    return {n: (params[n].detach() != 0).to(params[n].dtype) for n in names}


def measured_sparsity(model: nn.Module) -> float | None:
    """The fraction of zeros over the parameters a sparse model's record names (None for a dense model)."""
    masks = carried_masks(model)
    if not masks:
        return None
    total = sum(m.numel() for m in masks.values())
    return float(sum((m == 0).sum().item() for m in masks.values()) / total)


def check_sparsity(sparsity: Any) -> float:
    """``sparsity`` as a float in (0, 1); ValueError (one line) otherwise."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not math.isfinite(sparsity) \
            or not 0 < sparsity < 1:
        raise ValueError(f"sparsity={sparsity!r} is not allowed; expected the fraction of weights to set to zero, "
                         "a number in (0, 1) such as 0.95")
    return float(sparsity)


def initial_weights(original: nn.Module) -> nn.Module | None:
    """The untrained model ``original`` was trained from, rebuilt from its provenance (architecture and
    ``init_seed``, recorded by ``expunge.model``); None when the record does not have them."""
    prov = provenance(original)
    arch, init_seed = prov.architecture, getattr(prov, "init_seed", None)
    if not arch or init_seed is None:
        return None
    from .models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(init_seed))
        return build_model(arch["name"], **arch["kwargs"]).to(model_device(original))   # drawn on the CPU


def masked_training(start: nn.Module, data: Dataset, recipe: Recipe, *, masks: dict[str, torch.Tensor],
                    from_epoch: int, seed: int, task: str) -> nn.Module:
    """Train ``start`` in place with ``recipe`` on ``data``; from epoch ``from_epoch`` on (0: from the start), the
    weights are multiplied by ``masks``, the masked gradients are zeroed before every step and the zeros pinned
    after it. Epochs before ``from_epoch``
    are dense and use an optimiser of their own, so those epochs are exactly ``expunge.train``'s (same recipe,
    seed and start), and the masked epochs start with a fresh optimiser as in the reference."""
    active = {"on": False}
    pin = pin_weights(masks, {k: torch.zeros_like(m) for k, m in masks.items()})
    zero_grads = mask_gradients(masks)

    def switch_on(model: nn.Module) -> None:
        apply_masks(model, masks)
        active["on"] = True

    if from_epoch == 0:
        switch_on(start)
    dense_plan = batches(data, recipe.batch_size)

    def plan(epoch: int, g: torch.Generator) -> list[Batch]:
        tag = "dense" if epoch < from_epoch else ""
        return [Batch(b.parts, tag) for b in dense_plan(epoch, g)]

    def at_epoch_end(model: nn.Module, epoch: int) -> None:
        if epoch + 1 == from_epoch:
            switch_on(model)

    def pinned(model: nn.Module) -> None:
        if active["on"]:
            pin(model)

    def masked_grads(model: nn.Module) -> None:
        if active["on"]:
            zero_grads(model)

    return fit(start, plan, recipe=recipe, task=task, seed=seed, name="sparsify", grad_hooks=[masked_grads],
               step_hooks=[pinned], epoch_hooks=[at_epoch_end], tag_lr={"dense": 1.0} if from_epoch > 0 else None)


def sparsify(original: nn.Module, data: Dataset, *, sparsity: float = 0.95, rewind: int | str | None = "auto",
             init: nn.Module | None = None, seed: int | None = None, **recipe: Any) -> nn.Module:
    """The sparse original of the prune-first protocol (module docstring): ``original`` pruned by one-shot
    magnitude pruning to ``sparsity``, rewound to epoch ``rewind`` of its run and retrained on ``data`` (the full
    training data it was trained on) with its recorded recipe and the mask fixed. ``original`` is left untouched.

    ``rewind``: ``"auto"`` (the reference's 8/182 of the epochs, rounded), an epoch in [0, epochs), or None (no
    rewinding: retrain the pruned trained weights). ``init``: the untrained model ``original`` was trained from
    (default: rebuilt from its provenance; needed for rewinding). ``seed``: the run's seed (default: the
    original's, which replays its own run). ``recipe``: fields of ``Recipe`` overriding the recorded recipe.

    The result carries its mask (see :func:`carried_masks`); unlearn it with any method and the zeros stay zero.
    """
    if not isinstance(original, nn.Module):
        raise TypeError(f"original must be a torch nn.Module; got {type(original).__name__}")
    sparsity = check_sparsity(sparsity)
    prov = provenance(original)
    if prov.sparse:
        raise ValueError("the original is already sparse (it carries a mask from sparsify); sparsify its dense "
                         "original instead")
    if init is not None and not isinstance(init, nn.Module):
        raise TypeError(f"init must be the untrained torch nn.Module the original was trained from; got "
                        f"{type(init).__name__}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an integer or None (the original's seed); got {seed!r}")
    if prov.recipe is None and not {"epochs", "lr"} <= set(recipe):
        raise ValueError("the original carries no training recipe (it was not trained by expunge.train); pass the "
                         "recipe that trained it, at least epochs= and lr=, to sparsify")
    r = Recipe.from_dict({**(prov.recipe or {}), **recipe})
    from_epoch = rewind_epoch(rewind, r.epochs)
    if from_epoch is None and init is not None:
        raise ValueError("init= gives the weights to rewind to, and rewind=None does not rewind; drop init or give "
                         "rewind an epoch")
    base, idx = resolve(data)
    if len(idx) == 0:
        raise ValueError("the training data is empty")
    data_print = fingerprint(data)
    if prov.data_fingerprint is not None and data_print != prov.data_fingerprint:
        raise ValueError("data is not the data the original was trained on (its fingerprint differs); pass the "
                         "full training data")
    layers, weights = pruned_parameters(original)
    if from_epoch is not None:
        init = init if init is not None else initial_weights(original)
        if init is None:
            raise ValueError(f"rewind={rewind!r} needs the original's initial weights: pass init=<the untrained "
                             "model it was trained from>, or rewind=None to retrain the pruned trained weights")
        want = {k: tuple(v.shape) for k, v in original.state_dict().items()}
        if {k: tuple(v.shape) for k, v in init.state_dict().items()} != want:
            raise ValueError("init does not have the original's parameters (names or shapes differ); pass the "
                             "untrained model the original was trained from")
    if base.task == "classification":
        from .methods.base import output_size

        k = output_size(original, move(features(data)[:1], model_device(original)))
        top = int(base.y[idx].max())
        if top >= k:
            raise ValueError(f"the data has label {top} but the model has only {k} outputs (labels 0..{k - 1})")
    run_seed = int(seed if seed is not None else (prov.seed if prov.seed is not None else 0))

    start_time = time.perf_counter()
    masks = magnitude_masks(weights, sparsity)
    if from_epoch is None:
        start, from_epoch = copy.deepcopy(original), 0
    else:
        start = copy.deepcopy(init)
    out = masked_training(start, data, r, masks=masks, from_epoch=from_epoch, seed=run_seed, task=base.task)
    apply_masks(out, masks)
    record = {"sparsity": sparsity, "layers": layers, "parameters": list(masks),
              "rewind": None if rewind is None else from_epoch, "method": "one-shot magnitude pruning"}
    stamp(out, original, recipe=r.to_dict(), task=base.task, data_fingerprint=data_print, seed=run_seed,
          seconds=time.perf_counter() - start_time, method=None, method_args={}, sparse=record,
          history=prov.history + [f"sparsify:{sparsity:g}"])
    return out


def rewind_epoch(rewind: Any, epochs: int) -> int | None:
    """The epoch ``rewind`` names in a run of ``epochs`` (None: no rewinding); ValueError (one line) otherwise."""
    if rewind is None:
        return None
    if rewind == "auto":
        return int(round(epochs * REFERENCE_REWIND[0] / REFERENCE_REWIND[1]))
    if isinstance(rewind, bool) or not isinstance(rewind, int) or not 0 <= rewind < max(epochs, 1):
        raise ValueError(f"rewind={rewind!r} is not allowed; expected 'auto', None (no rewinding) or an epoch of the "
                         f"original's run in 0..{max(epochs - 1, 0)}")
    return rewind


__all__ = ["sparsify", "carried_masks", "measured_sparsity", "pruned_parameters", "magnitude_masks",
           "apply_masks", "initial_weights", "masked_training", "check_sparsity", "rewind_epoch"]
