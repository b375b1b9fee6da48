"""What every image-generator method shares: ``GenerativeMethod`` and ``GenerativeArgs``.

A generative method (``tasks = ("generation",)``) unlearns a class-conditional image generator
(:class:`expunge.gen.base.GenerativeModel`: a diffusion model or a GAN) on data from
:func:`expunge.data.for_generation`. The class to forget is read from the forget set's labels
(:func:`forget_classes`); a method names the model kinds it supports in ``kinds`` and refuses the others, and any
model that is not a generator, with one line before any work (:meth:`GenerativeMethod.unlearn`).

Like every method it trains through ``training.fit`` (task ``generation``) with ``step_hooks=self.step_hooks()``,
so ``prune_dense_then_recover`` and a sparse original's mask work unchanged. The losses draw their noise, timesteps
and label dropout from torch's global RNG on the CPU and move them to the model's device (so every device draws the
same numbers); ``fit`` seeds it, so seeded runs are bitwise repeatable on CPU.

Training defaults (``GenerativeArgs``): Adam at lr 1e-4 without weight decay, batches of 64, a constant learning
rate and gradients clipped at norm 1: the optimiser settings of SalUn's DDPM unlearning config
(``DDPM/configs/cifar10_saliency_unlearn.yml``: Adam, lr 1e-4, weight decay 0, ``grad_clip`` 1.0); batches of 64
instead of its 128, as the images here are few. ``epochs`` counts passes over the forget set (methods that pair
each forget batch with a retain batch) or over the retain set (fine-tuning); each method's file states its own
defaults and grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import targets
from ..training import fit
from .base import Method, TrainArgs, registered


@dataclass
class GenerativeArgs(TrainArgs):
    epochs: int = 10
    lr: float = 1e-4
    batch_size: int = 64
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    clip_grad_norm: float | None = 1.0


class GenerativeMethod(Method):
    """Base class of the image-generator methods (see the module docstring)."""

    tasks: ClassVar[tuple[str, ...]] = ("generation",)
    kinds: ClassVar[tuple[str, ...]] = ("diffusion",)     # the model kinds (GenerativeModel.kind) it unlearns
    distils_one_step: ClassVar[bool] = False              # its result is a one-step generator (no denoising error)
    Args: ClassVar[type] = GenerativeArgs

    def unlearn(self, model: nn.Module, *, forget: Dataset, retain: Dataset | None = None,
                seed: int = 0, device: torch.device | None = None) -> nn.Module:
        check_kind(model, self)
        return super().unlearn(model, forget=forget, retain=retain, seed=seed, device=device)

    def recipe_fit(self, model: nn.Module, plan: Any, loss_fn: Callable, seed: int, *, recipe: Any = None,
                   params: Any = None, grad_hooks: tuple = (), step_hooks: tuple = (),
                   pins: bool = True) -> nn.Module:
        """``training.fit`` on the generation task with ``recipe`` (default: this method's own,
        ``self.args.recipe()``) and, unless ``pins=False``, this method's mask pins (``self.step_hooks()``), whose
        parameter names are the original model's: a caller training another module places them itself."""
        return fit(model, plan, recipe=self.args.recipe() if recipe is None else recipe, loss_fn=loss_fn,
                   task="generation", seed=seed, name=self.name, params=params, grad_hooks=list(grad_hooks),
                   step_hooks=[*step_hooks, *(self.step_hooks() if pins else [])])


def check_kind(model: Any, method: Method) -> None:
    """Refuse, in one line, a model that is not an image generator or whose kind ``method`` does not unlearn."""
    from ..gen.base import is_generative

    kinds = getattr(method, "kinds", ())
    if not is_generative(model):
        raise ValueError(f"method {method.name!r} unlearns image generators (expunge.gen: {', '.join(kinds)} "
                         f"models); got {type(model).__name__}")
    if model.kind not in kinds:
        fitting = sorted(n for n, cls in registered().items()
                         if "generation" in cls.tasks and model.kind in getattr(cls, "kinds", ()))
        raise ValueError(f"method {method.name!r} unlearns {' and '.join(kinds)} models; this is a {model.kind} model "
                         f"(methods for {model.kind} models: {', '.join(fitting) or 'none'})")


def forget_classes(forget: Dataset) -> list[int]:
    """The classes to forget: the distinct labels of the forget set, in increasing order."""
    return sorted({int(c) for c in targets(forget).tolist()})


def image_size(model: Any) -> int:
    """C·H·W of the model's images: the factor between expunge's per-value denoising loss and a per-image sum."""
    c, h, w = model.image_shape
    return int(c * h * w)


def part_data(batch: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of a named batch part."""
    part = batch[name]
    return part.x, part.y
