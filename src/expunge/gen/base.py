"""What every image generator on the ``generation`` task offers expunge.

A generative model is an ``nn.Module`` that knows its own training objective (``training_loss``: the denoising
loss of a diffusion model, the adversarial losses of a GAN), how to draw images for given class labels
(``sample``) and how to re-initialise itself (``fresh_copy``, used by ``retrain`` for the oracle). ``training.fit``
calls ``training_loss`` on each batch when no other loss is given, so ``expunge.train``, every method built on
``fit``, the run store and the bench need no second path.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class GenerativeModel(nn.Module):
    """Base class of expunge's image generators (class-conditional; images in [-1, 1]).

    Subclasses set ``kind``, ``n_classes``, ``image_shape`` and ``recipe_defaults`` and implement
    ``training_loss``, ``sample``, ``fresh_copy`` and ``config`` (the keyword arguments that rebuild the model,
    recorded so that a saved model can be loaded)."""

    kind: ClassVar[str] = "generator"
    recipe_defaults: ClassVar[dict[str, Any]] = {}
    n_classes: int
    image_shape: tuple[int, int, int]

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The model's training objective on a batch of images ``x`` and labels ``y`` (a scalar); randomness from
        torch's global RNG, which ``training.fit`` seeds."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, *, seed: int = 0, **kwargs: Any) -> torch.Tensor:
        """Images ``[N, C, H, W]`` in [-1, 1] conditioned on ``labels``, deterministic given ``seed``."""
        raise NotImplementedError

    def fresh_copy(self) -> "GenerativeModel":
        """The same configuration, re-initialised from torch's global RNG."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """What rebuilds this model (its factory and keyword arguments), JSON-serialisable."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``model(images)`` alone gives a tensor computed from images (a diffusion model's noise prediction at
        the middle timestep without a class, a GAN's discriminator logits), which ``Method.unlearn`` checks for
        non-finite values after every method."""
        raise NotImplementedError


def is_generative(model: Any) -> bool:
    """Whether ``model`` is one of expunge's image generators."""
    return isinstance(model, GenerativeModel)


def labels_tensor(labels: Any, n_classes: int, *, null_ok: bool = False) -> torch.Tensor:
    """``labels`` as a 1-D LongTensor on the CPU, each in 0..n_classes-1 (or n_classes, the null class, when
    ``null_ok``); ValueError naming the first label out of range."""
    raw = torch.as_tensor(labels, device="cpu")
    if raw.dtype == torch.bool or raw.is_complex() or (raw.is_floating_point() and not bool((raw == raw.round()).all())):
        raise ValueError(f"class labels must be whole numbers 0..{n_classes - 1}; got {raw.dtype} values that are not")
    t = raw.to(torch.long).reshape(-1)
    top = n_classes if null_ok else n_classes - 1
    bad = t[(t < 0) | (t > top)]
    if len(bad):
        raise ValueError(f"class label {int(bad[0])} is out of range; the model generates classes 0..{n_classes - 1}")
    return t
