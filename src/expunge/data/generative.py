"""Labelled images for the ``generation`` task (class-conditional image generators, :mod:`expunge.gen`)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .datasets import ArrayDataset, is_streamed, resolve


def for_generation(data: Dataset, *, size: int | None = None,
                   value_range: tuple[float, float] = (0.0, 1.0)) -> ArrayDataset:
    """``data``'s labelled images as a dataset of task ``generation``: pixels mapped from ``value_range`` (expunge's
    image loaders give [0, 1]) to [-1, 1], optionally resized to ``size`` x ``size`` (bilinear, antialiased), the
    class labels and class names kept. ``split_forget(..., classes=[c])`` then forgets every image of class c.

    ValueError where the data is not images ``[N, C, H, W]`` with integer class labels, or where a pixel lies
    outside ``value_range``."""
    base, idx = resolve(data)
    if is_streamed(base):
        raise ValueError("for_generation needs images in memory; the data is streamed (load it with in_memory=True)")
    if base.task != "classification":
        raise ValueError(f"for_generation needs images with class labels; the data's task is {base.task}")
    if base.x.ndim != 4:
        raise ValueError(f"for_generation needs images of shape [N, C, H, W]; got features of shape "
                         f"{tuple(base.x.shape)} (load images unflattened, e.g. digits(flat=False))")
    lo, hi = (float(v) for v in value_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"value_range must be two finite numbers low < high; got {value_range!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 4 <= size <= 256):
        raise ValueError(f"size must be an integer in 4..256 or None; got {size!r}")
    x = base.x[idx].float()
    if len(x) and (float(x.min()) < lo - 1e-6 or float(x.max()) > hi + 1e-6):
        raise ValueError(f"pixel values span [{float(x.min()):g}, {float(x.max()):g}], outside value_range "
                         f"{(lo, hi)}; pass the range the images are stored in")
    x = (x - lo) / (hi - lo) * 2 - 1
    if size is not None and tuple(x.shape[2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)
    name = f"{base.name}/generation" if base.name else "generation"
    return ArrayDataset(x.contiguous(), base.y[idx].clone(), task="generation", class_names=base.class_names,
                        name=name, groups=None if base.groups is None else base.groups[idx.numpy()])
