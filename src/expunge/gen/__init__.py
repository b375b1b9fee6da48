"""Class-conditional image generators on expunge's front door (task ``generation``).

``expunge.train``, ``expunge.unlearn`` and ``expunge.evaluate`` take a generative model and labelled images made
ready by :func:`expunge.data.for_generation`. Diffusion models (:func:`unet`, :func:`text_unet`,
:meth:`DiffusionModel.from_unet` for a user's own diffusers UNet) need the ``gen`` extra (``pip install
'expunge[gen]'``: diffusers); the conditional GAN (:func:`gan`) is pure torch. Nothing is downloaded: models are
built from configs and trained here.
"""
from __future__ import annotations

from typing import Any

from .base import GenerativeModel, is_generative
from .gan import ConditionalGAN, gan       # pure torch; binds the name ``gan`` to the factory, not the submodule


def unet(*args: Any, **kwargs: Any):
    """The embedded class-conditional diffusion model; see :func:`expunge.gen.diffusion.unet`."""
    from .diffusion import unet as build

    return build(*args, **kwargs)


def text_unet(*args: Any, **kwargs: Any):
    """A tiny text-conditioned diffusion model; see :func:`expunge.gen.diffusion.text_unet`."""
    from .diffusion import text_unet as build

    return build(*args, **kwargs)


def from_config(kind: str, config: dict[str, Any]):
    """Rebuild a generator of ``kind`` (``diffusion`` or ``gan``) from its ``config()`` (fresh weights)."""
    if kind == "diffusion":
        from .diffusion import from_config as build

        return build(config)
    if kind == "gan":
        return gan(**config)
    raise ValueError(f"unknown generator kind {kind!r}; expected 'diffusion' or 'gan'")


def __getattr__(name: str) -> Any:
    if name == "DiffusionModel":
        from .diffusion import DiffusionModel

        return DiffusionModel
    raise AttributeError(f"module 'expunge.gen' has no attribute {name!r}")


__all__ = ["GenerativeModel", "is_generative", "unet", "text_unet", "gan", "from_config", "DiffusionModel", "ConditionalGAN"]
