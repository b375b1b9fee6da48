"""The judge: a classifier trained here on a generation dataset's real images, which scores generated ones.

Unlearning accuracy, generation accuracy and the Fréchet distances of :mod:`expunge.gen.evaluate` all read a
classifier of the real images (SalUn scores its diffusion models with a ResNet-34 trained on CIFAR-10; FID reads
Inception features, whose weights cannot be fetched here, so the Fréchet distances here are on this judge's
penultimate features instead and are not called FID).

Architecture (:class:`JudgeNet`): two 3x3 convolutions (16 and 32 channels, ReLU), 2x2 max-pooling, adaptive
average pooling to 4x4, a 64-unit ReLU layer (the **features**) and a linear head; ~40k parameters at any image
size. Recipe (:data:`JUDGE_RECIPE`): Adam, lr 3e-3, batches of 64, 20 epochs, cosine decay, no weight decay,
through :func:`expunge.training.fit` (seeded, bitwise repeatable on CPU). On scikit-learn's digits (1x8x8, 1437
training images scaled to [-1, 1]) it classifies 98.1% of the 360 test images correctly (seeds 0 and 1) after
~3 s of one CPU thread.

Held-out accuracy: measured on ``test`` when given (then the judge trains on all of ``data``), else on a seeded
stratified 20% of ``data`` that it does not train on. :func:`judge` refuses (ValueError) a judge whose held-out
accuracy is below ``min_accuracy`` (:data:`MIN_ACCURACY`, 0.9): scores read from a poor classifier would measure
the classifier. ``judge_accuracy`` is reported with every score.

Caching: a judge is trained once per content key (the data's and the test set's fingerprints, the recipe, the
architecture, the seed) and kept in memory and on disk as one safetensors file (its held-out accuracy in the
file's metadata) under ``$EXPUNGE_CACHE/judges`` (default ``~/.cache/expunge/judges``), written atomically;
``cache=False`` trains without reading or writing the disk.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import ArrayDataset, fingerprint, resolve
from ..threads import scoped

log = logging.getLogger(__name__)

ARCHITECTURE = "judge-cnn/1"          # part of the cache key: change it when JudgeNet changes
JUDGE_RECIPE: dict[str, Any] = {"optimizer": "adam", "lr": 3e-3, "batch_size": 64, "epochs": 20,
                                "weight_decay": 0.0, "schedule": "cosine"}
HOLDOUT_FRACTION = 0.2                # held out of ``data`` when no test set is given
MIN_ACCURACY = 0.9                    # below this held-out accuracy, judge refuses
FEATURES = 64
CACHE_ENV = "EXPUNGE_CACHE"
_MEMORY: dict[str, "Judge"] = {}
_MEMORY_SIZE = 8


class JudgeNet(nn.Module):
    """conv(16) - ReLU - conv(32) - ReLU - maxpool 2 - avgpool to 4x4 - linear(64) - ReLU [features] - linear head."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * 16, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class Judge:
    """A trained :class:`JudgeNet` (eval mode, on the CPU, frozen), its held-out ``accuracy`` (a fraction) on
    ``n_heldout`` images, and the content ``key`` it is cached under."""

    net: JudgeNet
    accuracy: float
    n_heldout: int
    n_classes: int
    image_shape: tuple[int, int, int]
    key: str
    batch_size: int = 512

    def log_probs(self, images: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``[N, n_classes]``, differentiable in ``images`` (the robustness attack uses it)."""
        self._check(images)
        return torch.log_softmax(self.net(images.to(torch.float32)), dim=-1)

    @torch.no_grad()
    def probs(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[N, n_classes]`` of images in [-1, 1]."""
        return torch.cat([self.log_probs(b).exp() for b in self._batches(images)]) if len(images) else \
            torch.zeros(0, self.n_classes, device="cpu")

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """The judged class of each image (LongTensor ``[N]``)."""
        return self.probs(images).argmax(-1)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[N, 64]`` (float64) for Fréchet distances."""
        self._check(images)
        if not len(images):
            return torch.zeros(0, FEATURES, dtype=torch.float64, device="cpu")
        return torch.cat([self.net.features(b.to(torch.float32)) for b in self._batches(images)]).double()

    def _batches(self, images: torch.Tensor) -> list[torch.Tensor]:
        self._check(images)
        return list(images.detach().cpu().split(self.batch_size))

    def _check(self, images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"the judge reads images shaped [N, {', '.join(map(str, self.image_shape))}]; got {shape}")


@scoped
def judge(data: Dataset, *, test: Dataset | None = None, seed: int = 0, min_accuracy: float = MIN_ACCURACY,
          cache: bool = True) -> Judge:
    """The judge of ``data`` (a ``generation`` dataset: images in [-1, 1], class labels), trained once per content
    and remembered in memory and (``cache=True``) on disk; see the module docstring. ValueError when the data is
    not labelled images, or when the judge's held-out accuracy is below ``min_accuracy``."""
    if isinstance(min_accuracy, bool) or not isinstance(min_accuracy, (int, float)) or not 0 <= min_accuracy <= 1:
        raise ValueError(f"min_accuracy must be a fraction in [0, 1]; got {min_accuracy!r}")
    x, y, n_classes = _images(data, "data")
    if test is not None:
        tx, ty, _ = _images(test, "test")
        if tx.shape[1:] != x.shape[1:]:
            raise ValueError(f"test images are shaped {tuple(tx.shape[1:])}, the data's {tuple(x.shape[1:])}")
    key = _key(data, test, seed)
    found = _MEMORY.get(key) or (_load(key, n_classes, tuple(x.shape[1:])) if cache else None)
    if found is None:
        found = _train(x, y, None if test is None else (tx, ty), n_classes, seed, key)
        if cache:
            _save(found)
    _MEMORY.pop(key, None)
    _MEMORY[key] = found                          # most recently used last
    while len(_MEMORY) > _MEMORY_SIZE:
        _MEMORY.pop(next(iter(_MEMORY)))
    check_accuracy(found, min_accuracy)
    return found


def check_accuracy(j: Judge, min_accuracy: float = MIN_ACCURACY) -> None:
    """ValueError when ``j``'s held-out accuracy is below ``min_accuracy``."""
    if j.accuracy < min_accuracy:
        raise ValueError(f"the judge classifies only {100 * j.accuracy:.1f}% of {j.n_heldout} held-out real images "
                         f"correctly, below the {100 * min_accuracy:.0f}% its scores need (min_accuracy=)")


def cache_dir() -> Path:
    """Where judges are stored: ``$EXPUNGE_CACHE/judges``, default ``~/.cache/expunge/judges``."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "expunge") / "judges"


def _images(data: Dataset, what: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    base, idx = resolve(data)
    if base.task not in ("generation", "classification") or base.x.ndim != 4:
        raise ValueError(f"{what}: the judge needs labelled images [N, C, H, W] (expunge.data.for_generation); got "
                         f"{base.task} data with features of shape {tuple(base.x.shape)}")
    if len(idx) == 0:
        raise ValueError(f"{what}: no images")
    n_classes = base.num_classes or int(base.y.max()) + 1
    return base.x[idx], base.y[idx], n_classes


def _key(data: Dataset, test: Dataset | None, seed: int) -> str:
    parts = [ARCHITECTURE, json.dumps(JUDGE_RECIPE, sort_keys=True), fingerprint(data),
             "-" if test is None else fingerprint(test), str(int(seed)), str(HOLDOUT_FRACTION)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _train(x: torch.Tensor, y: torch.Tensor, heldout: tuple[torch.Tensor, torch.Tensor] | None, n_classes: int,
           seed: int, key: str) -> Judge:
    from ..seeds import derive
    from ..training import Recipe, batches, fit

    if heldout is None:
        train_idx, held_idx = _stratified_split(y, HOLDOUT_FRACTION, derive(seed, "judge-holdout"))
        (x, y), heldout = (x[train_idx], y[train_idx]), (x[held_idx], y[held_idx])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive(seed, "judge-init"))
        net = JudgeNet(x.shape[1], n_classes)
    train = ArrayDataset(x, y, task="classification")
    recipe = Recipe.from_dict(JUDGE_RECIPE)
    fit(net, batches(train, recipe.batch_size), recipe=recipe, seed=derive(seed, "judge-train"), name="judge")
    return _frozen(net, heldout, n_classes, tuple(x.shape[1:]), key)


def _frozen(net: JudgeNet, heldout: tuple[torch.Tensor, torch.Tensor], n_classes: int,
            shape: tuple[int, ...], key: str) -> Judge:
    net.eval().requires_grad_(False)
    j = Judge(net, 0.0, len(heldout[1]), n_classes, shape, key)        # type: ignore[arg-type]
    j.accuracy = float((j.predict(heldout[0]) == heldout[1]).double().mean())
    return j


def _stratified_split(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) indices: ``fraction`` of each class (at least one where a class has two) held out."""
    g = torch.Generator().manual_seed(seed)
    train, held = [], []
    for c in torch.unique(y):
        rows = torch.nonzero(y == c).squeeze(1)
        rows = rows[torch.randperm(len(rows), generator=g, device="cpu")]
        k = int(round(fraction * len(rows))) if len(rows) > 1 else 0
        k = max(k, 1) if len(rows) > 1 else 0
        held.append(rows[:k])
        train.append(rows[k:])
    return torch.cat(train).sort().values, torch.cat(held).sort().values


def _path(key: str) -> Path:
    return cache_dir() / f"{key}.safetensors"


def _save(j: Judge) -> None:
    from safetensors.torch import save

    from ..modelio import atomic_write

    meta = {"architecture": ARCHITECTURE, "accuracy": repr(j.accuracy), "n_heldout": str(j.n_heldout),
            "n_classes": str(j.n_classes), "image_shape": json.dumps(list(j.image_shape))}
    try:
        atomic_write(_path(j.key), save({k: v.contiguous() for k, v in j.net.state_dict().items()}, metadata=meta))
    except OSError as e:                         # a read-only or full cache costs a retraining later, nothing more
        log.warning("judge: could not cache the judge in %s (%s)", cache_dir(), e)


def _load(key: str, n_classes: int, shape: tuple[int, ...]) -> Judge | None:
    from safetensors import safe_open

    path = _path(key)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        if (meta.get("architecture") != ARCHITECTURE or int(meta["n_classes"]) != n_classes
                or tuple(json.loads(meta["image_shape"])) != tuple(shape)):
            return None
        with torch.random.fork_rng(devices=[]):          # the caller's RNG is not drawn from
            net = JudgeNet(shape[0], n_classes)
        net.load_state_dict(state)
    except Exception as e:                        # a damaged cache entry is retrained and overwritten
        log.warning("judge: ignoring the unreadable cached judge %s (%s)", path, e)
        return None
    net.eval().requires_grad_(False)
    return Judge(net, float(meta["accuracy"]), int(meta["n_heldout"]), n_classes,
                 tuple(shape), key)                                                      # type: ignore[arg-type]
